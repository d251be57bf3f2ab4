"""Significance over users: paired t-test and Wilcoxon per metric, Holm correction across
the baselines one method is compared with, bootstrap 95% intervals of each mean.

Everything is computed from the per-user arrays kept in the run records; runs are paired
only when their split digests (users, order, targets) are identical.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from bench.errors import BenchError
from bench.results import per_user

ALPHA = 0.05


def paired_tests(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided paired Student's t-test and Wilcoxon signed-rank p-values."""
    difference = a - b
    if not difference.any():
        return 1.0, 1.0
    if np.allclose(difference, difference[0]):  # constant non-zero difference: no variance
        return 0.0, float(stats.wilcoxon(a, b).pvalue)
    return float(stats.ttest_rel(a, b).pvalue), float(stats.wilcoxon(a, b).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, made monotone, capped at 1)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (m - position) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def bootstrap_interval(values: np.ndarray, seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    if len(values) < 2 or np.all(values == values[0]):
        return float(values.mean()), float(values.mean())
    result = stats.bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=0.95,
                             method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def check_pairable(a: dict[str, Any], b: dict[str, Any]) -> None:
    protocols = [record["split"].get("protocol", "leave-one-out") for record in (a, b)]
    if protocols[0] != protocols[1]:
        raise BenchError(f"runs {a['run_id']} ({protocols[0]}) and {b['run_id']} ({protocols[1]}) use different "
                         "split protocols; a paired test needs runs of one protocol on the same split")
    if a["dataset"] != b["dataset"] or a["split"]["digest"] != b["split"]["digest"]:
        raise BenchError(f"runs {a['run_id']} ({a['dataset']}) and {b['run_id']} ({b['dataset']}) "
                         "are not on the same users and targets; a paired test needs the same split")
    if a["config"]["eval"].get("mask_history") != b["config"]["eval"].get("mask_history"):
        raise BenchError(f"runs {a['run_id']} and {b['run_id']} differ in eval.mask_history")


@dataclasses.dataclass(frozen=True)
class ComparisonReport:
    """One method (``candidate``) against one or more baselines, every pair tested once."""

    candidate: str
    rows: tuple[dict[str, Any], ...]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows))

    def _display_rows(self) -> list[dict[str, str]]:
        shown = []
        for row in self.rows:
            shown.append({
                "baseline": row["baseline"], "metric": row["metric"],
                "candidate": f"{row['candidate_mean']:.4f} [{row['candidate_ci_low']:.4f}, {row['candidate_ci_high']:.4f}]",
                "baseline value": f"{row['baseline_mean']:.4f} [{row['baseline_ci_low']:.4f}, {row['baseline_ci_high']:.4f}]",
                "t-test p": f"{row['t_test_p']:.3g}", "Holm p": f"{row['t_test_p_holm']:.3g}",
                "Wilcoxon p": f"{row['wilcoxon_p']:.3g}", "sig.": "*" if row["significant"] else ""})
        return shown

    def to_markdown(self) -> str:
        return tabulate(self._display_rows(), headers="keys", tablefmt="github")

    def to_latex(self) -> str:
        return tabulate(self._display_rows(), headers="keys", tablefmt="latex_booktabs")


def compare_runs(candidate: dict[str, Any], baselines: Sequence[dict[str, Any]],
                 metrics: Sequence[str]) -> ComparisonReport:
    """Paired tests of ``candidate`` against each baseline on each metric; Holm correction is
    applied per metric across the baselines (the family of comparisons one claim rests on)."""
    for baseline in baselines:
        check_pairable(candidate, baseline)
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        a = per_user(candidate, metric)
        metric_rows = []
        for baseline in baselines:
            b = per_user(baseline, metric)
            t_p, w_p = paired_tests(a, b)
            a_low, a_high = bootstrap_interval(a)
            b_low, b_high = bootstrap_interval(b)
            metric_rows.append({
                "baseline": f"{baseline['method']} ({baseline['run_id']})", "metric": metric,
                "candidate_mean": float(a.mean()), "candidate_ci_low": a_low, "candidate_ci_high": a_high,
                "baseline_mean": float(b.mean()), "baseline_ci_low": b_low, "baseline_ci_high": b_high,
                "t_test_p": t_p, "wilcoxon_p": w_p})
        for row, adjusted in zip(metric_rows, holm([r["t_test_p"] for r in metric_rows])):
            row["t_test_p_holm"] = adjusted
            row["significant"] = adjusted < ALPHA
        rows.extend(metric_rows)
    return ComparisonReport(candidate=f"{candidate['method']} ({candidate['run_id']})", rows=tuple(rows))
