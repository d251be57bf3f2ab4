"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no display, no
pyplot global state) and returned as PNG bytes for an atomic write."""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

BAR_COLOR = "#4c72b0"
PAPER_COLOR = "#c44e52"


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def bar_chart(title: str, metric: str, labels: Sequence[str], means: Sequence[float],
              intervals: Sequence[tuple[float, float] | None], paper: Sequence[float | None]) -> bytes:
    """One bar per method; whiskers: the bootstrap 95% interval; a cross: the paper's number."""
    figure = _figure(max(4.0, 0.55 * len(labels) + 1.5), 3.2)
    axes = figure.subplots()
    positions = list(range(len(labels)))
    axes.bar(positions, means, color=BAR_COLOR, width=0.7)
    for position, mean, interval in zip(positions, means, intervals):
        if interval is not None:
            axes.errorbar([position], [mean], yerr=[[mean - interval[0]], [interval[1] - mean]], color="black",
                          capsize=3, linewidth=1)
    shown = [(position, value) for position, value in zip(positions, paper) if value is not None]
    if shown:
        axes.scatter([p for p, _ in shown], [v for _, v in shown], marker="x", color=PAPER_COLOR, zorder=3,
                     label="paper")
        # Above the axes, so the legend's cross is never read as one of the paper's numbers.
        axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2, fontsize=8, frameon=False)
    axes.set_xticks(positions)
    axes.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    axes.set_ylabel(metric)
    axes.set_title(title, fontsize=9, loc="left")  # the legend sits at the right
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def _series(curve: Sequence[dict[str, Any]]) -> tuple[list[float], str, dict[str, list[float]], dict[str, list[float]]]:
    """x values, x label, train-loss series and validation series of a record's training curve.

    Curves come from the engine's loop (``epoch``, ``train_loss``, ``validation: {metric: value}``),
    from RecBole (``valid_ndcg@10`` beside the loss) and from IDGenRec (entries of several phases,
    each counting its own epochs); a curve over several phases is drawn against the evaluation's
    position instead of the epoch."""
    phased = any("phase" in entry or "round" in entry for entry in curve)
    xs = [float(i + 1) if phased else float(entry.get("epoch", i + 1)) for i, entry in enumerate(curve)]
    x_label = "evaluation (phases in order)" if phased else "epoch"
    losses: dict[str, list[float]] = {}
    validation: dict[str, list[float]] = {}
    for index, entry in enumerate(curve):
        values = {key: value for key, value in entry.items() if isinstance(value, (int, float))
                  and not isinstance(value, bool) and not key.endswith("_seconds")}  # timings are not metrics
        nested = entry.get("validation") if isinstance(entry.get("validation"), dict) else {}
        for key, value in values.items():
            if "loss" in key:
                losses.setdefault(key, [math.nan] * len(curve))[index] = float(value)
            elif key.startswith("valid") or "@" in key:
                validation.setdefault(key, [math.nan] * len(curve))[index] = float(value)
        for key, value in nested.items():
            if isinstance(value, (int, float)):
                validation.setdefault(key, [math.nan] * len(curve))[index] = float(value)
    return xs, x_label, losses, validation


def has_curve(curve: Any) -> bool:
    if not isinstance(curve, list) or not curve or not all(isinstance(entry, dict) for entry in curve):
        return False
    _, _, losses, validation = _series(curve)
    return bool(losses or validation)


def curve_chart(title: str, curve: Sequence[dict[str, Any]], best_epoch: int | None = None) -> bytes:
    """Train loss (left) and validation metrics (right) by epoch."""
    from matplotlib.ticker import MaxNLocator

    xs, x_label, losses, validation = _series(curve)
    panels = [(name, series) for name, series in (("train loss", losses), ("validation", validation)) if series]
    figure = _figure(4.2 * len(panels), 3.0)
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (name, series) in zip(axes_list, panels):
        for label, values in series.items():
            axes.plot(xs, values, marker="o", markersize=3, label=label)
        if best_epoch is not None and x_label == "epoch":
            axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="best epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel(x_label)
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, frameon=False)
    figure.suptitle(title, fontsize=9)
    return _png(figure)
