"""The reality-check note of a table: which generative methods beat the best simple baseline.

A column belongs to a ``family`` (``bench/reference/tables.toml``, or a method's own
``TableColumn``): ``reality-check`` for the simple baselines that use the sequence
(docs/baselines.md), ``generative`` for the methods that generate item identifiers. For each row
of a chosen metric (HR@10 and NDCG@10), the best reality-check cell is the bar; every generative
cell is tested against it over the same users (paired t-test on the seed-averaged per-user
values), the p-values of one row adjusted together with Holm's method, and each generative
method is said to be above the bar, level with it, or below it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from bench.statistics import ALPHA, holm, paired_tests

REALITY_CHECK = "reality-check"
GENERATIVE = "generative"
FAMILIES = (REALITY_CHECK, GENERATIVE)
# The rows the note speaks of: the papers' headline metrics.
NOTE_METRICS = ("HR@10", "NDCG@10")


def _verdict(cell: Any, bar: Any, per_user: Callable[[Any, str], np.ndarray | None],
             metric: str) -> float | None:
    """The two-sided p-value of a generative cell against the bar (None when they cannot be
    paired: other users, or no per-user values)."""
    if cell.record["split"]["digest"] != bar.record["split"]["digest"]:
        return None
    a, b = per_user(cell, metric), per_user(bar, metric)
    if a is None or b is None:
        return None
    return paired_tests(a, b)[0]


def row_summary(labels: Sequence[str], families: Sequence[str | None], cells: Sequence[Any], metric: str,
                per_user: Callable[[Any, str], np.ndarray | None]) -> str | None:
    """One row's sentence, or None when the row has no reality-check value or no generative one."""
    checks = [(label, cell) for label, family, cell in zip(labels, families, cells)
              if family == REALITY_CHECK and cell.value is not None]
    generative = [(label, cell) for label, family, cell in zip(labels, families, cells)
                  if family == GENERATIVE and cell.value is not None]
    if not checks or not generative:
        return None
    bar_label, bar = max(checks, key=lambda item: item[1].value)
    tested = [(label, cell, _verdict(cell, bar, per_user, metric)) for label, cell in generative]
    pairable = [(label, cell, p) for label, cell, p in tested if p is not None]
    adjusted = holm([p for _, _, p in pairable]) if pairable else []
    above, level, below = [], [], []
    for (label, cell, _), p in zip(pairable, adjusted):
        text = f"{label} {cell.value:.4f} (p {p:.2g})"
        if p >= ALPHA:
            level.append(text)
        else:
            (above if cell.value > bar.value else below).append(text)
    unpaired = [label for label, _, p in tested if p is None]
    parts = [f"above: {', '.join(above) or 'none'}", f"level: {', '.join(level) or 'none'}",
             f"below: {', '.join(below) or 'none'}"]
    if unpaired:
        parts.append(f"not paired (other users): {', '.join(unpaired)}")
    return f"{metric}, bar {bar_label} {bar.value:.4f}: " + "; ".join(parts)


def reality_check_note(labels: Sequence[str], families: Sequence[str | None],
                       rows: Sequence[tuple[str, str, Sequence[Any], str]],
                       per_user: Callable[[Any, str], np.ndarray | None]) -> str:
    """The note under a table that has both families: per dataset row and metric of
    :data:`NOTE_METRICS`, the generative methods above, level with and below the best simple baseline."""
    if REALITY_CHECK not in families or GENERATIVE not in families:
        return ""
    sentences = []
    for dataset, metric, cells, _ in rows:
        if metric in NOTE_METRICS:
            summary = row_summary(labels, families, cells, metric, per_user)
            if summary:
                sentences.append(f"{dataset} {summary}")
    if not sentences:
        return ""
    checks = ", ".join(label for label, family in zip(labels, families) if family == REALITY_CHECK)
    return (f"\n\nReality check (docs/baselines.md): each generative column against the best of {checks} in its "
            f"row, paired t-test over users, Holm-adjusted within the row, p < {ALPHA}.\n"
            + "\n".join(f"- {sentence}" for sentence in sentences))
