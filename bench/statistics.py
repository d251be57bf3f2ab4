"""Significance over users: paired t-test and Wilcoxon per metric, Holm correction across
the baselines one method is compared with, bootstrap 95% intervals of each mean.

Everything is computed from the per-user arrays kept in the run records; runs are paired
only when their split digests (users, order, targets) are identical.

Several seeds of one configuration form a *seed group*: its value is the mean over seeds
(with their standard deviation), and it is tested through its seed-averaged per-user values,
so the test stays a paired test over users.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from bench.errors import BenchError
from bench.identity import identity_digest, record_configuration
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
    # Resampling n users with replacement draws each distinct value a multinomial number of
    # times, so drawing those counts gives the same bootstrap distribution of the mean without
    # an n x resamples index matrix (per-user HR/NDCG take few distinct values).
    distinct, counts = np.unique(values, return_counts=True)
    draws = np.random.default_rng(seed).multinomial(len(values), counts / len(values), size=resamples)
    means = draws @ distinct / len(values)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


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


def seed_group_key(record: dict[str, Any]) -> str:
    """What runs of one seed group share: method, dataset, data and configuration
    (:func:`bench.identity.record_configuration`, as the tables compare them), not the seed."""
    return identity_digest({"method": record["method"], "dataset": record["dataset"],
                            "data": record["split"]["digest"], "config": record_configuration(record)})


def seed_groups(records: Sequence[dict[str, Any]],
                key: Callable[[dict[str, Any]], str] = seed_group_key) -> list[list[dict[str, Any]]]:
    """Records grouped by configuration (``key``), one record per seed (the newest when a seed
    was run twice), seeds in ascending order; groups in order of first appearance."""
    groups: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        by_seed = groups.setdefault(key(record), {})
        seed = record.get("seed")
        if seed not in by_seed or record["started_at"] > by_seed[seed]["started_at"]:
            by_seed[seed] = record
    return [[by_seed[seed] for seed in sorted(by_seed, key=lambda s: (s is None, s))] for by_seed in groups.values()]


def check_seed_group(group: Sequence[dict[str, Any]]) -> None:
    """A hand-made group must be seeds of one configuration, each seed once."""
    if not group:
        raise BenchError("an empty group of runs")
    first = group[0]
    for record in group[1:]:
        if seed_group_key(record) != seed_group_key(first):
            raise BenchError(f"runs {first['run_id']} and {record['run_id']} differ in more than their seed "
                             "(method, dataset, split or config); a seed group holds one configuration")
    seeds = [record.get("seed") for record in group]
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"runs {', '.join(r['run_id'] for r in group)}: a seed appears twice in one group")


def seed_averaged(group: Sequence[dict[str, Any]], metric: str, targets: str = "") -> np.ndarray:
    """Per-user values averaged over the group's seeds (the values a paired test over users reads);
    ``targets``: a group of test targets (``bench.results.per_user``), all by default."""
    return np.mean([per_user(record, metric, targets) for record in group], axis=0)


def seed_spread(group: Sequence[dict[str, Any]], metric: str, targets: str = "") -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds of the run-level metric; std is 0
    for a single seed."""
    values = np.asarray([per_user(record, metric, targets).mean() for record in group])
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def describe_group(group: Sequence[dict[str, Any]]) -> str:
    method = group[0]["method"]
    if len(group) == 1:
        return f"{method} ({group[0]['run_id']})"
    return f"{method} (seeds {', '.join(str(r.get('seed')) for r in group)})"


@dataclasses.dataclass(frozen=True)
class ComparisonReport:
    """One method (``candidate``) against one or more baselines, every pair tested once."""

    candidate: str
    rows: tuple[dict[str, Any], ...]
    targets: str = ""  # the group of test targets tested ("" = all of them)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**row, "targets": self.targets.replace("_", "-") or "all"} for row in self.rows])

    def _title(self, comment: str = "") -> str:
        """The group of targets, named as `bench compare --targets` names it, and the candidate."""
        targets = f"{comment}Targets: {self.targets.replace('_', '-')}\n" if self.targets else ""
        return targets + f"{comment}Candidate: {self.candidate}\n"

    def _display_rows(self) -> list[dict[str, str]]:
        shown = []
        for row in self.rows:
            shown.append({
                "baseline": row["baseline"], "metric": row["metric"],
                "candidate": _mean_text(row, "candidate"), "baseline value": _mean_text(row, "baseline"),
                "t-test p": f"{row['t_test_p']:.3g}", "Holm p": f"{row['t_test_p_holm']:.3g}",
                "Wilcoxon p": f"{row['wilcoxon_p']:.3g}", "sig.": _significance_text(row)})
        return shown

    def to_markdown(self) -> str:
        return self._title() + tabulate(self._display_rows(), headers="keys", tablefmt="github")

    def to_latex(self) -> str:
        return self._title("% ") + tabulate(self._display_rows(), headers="keys", tablefmt="latex_booktabs")


def _significance_text(row: dict[str, Any]) -> str:
    """``*`` and which way: the candidate significantly higher or lower than the baseline."""
    if not row["significant"]:
        return ""
    return "* higher" if row["candidate_mean"] > row["baseline_mean"] else "* lower"


def _mean_text(row: dict[str, Any], side: str) -> str:
    text = f"{row[f'{side}_mean']:.4f}"
    if row[f"{side}_seeds"] > 1:
        text += f" ± {row[f'{side}_seed_std']:.4f}"
    return text + f" [{row[f'{side}_ci_low']:.4f}, {row[f'{side}_ci_high']:.4f}]"


def compare_runs(candidate: dict[str, Any], baselines: Sequence[dict[str, Any]],
                 metrics: Sequence[str], targets: str = "") -> ComparisonReport:
    """Paired tests of one run against each of several baseline runs (see :func:`compare_groups`)."""
    return compare_groups([candidate], [[baseline] for baseline in baselines], metrics, targets)


def compare_groups(candidate: Sequence[dict[str, Any]], baselines: Sequence[Sequence[dict[str, Any]]],
                   metrics: Sequence[str], targets: str = "") -> ComparisonReport:
    """Paired tests of the ``candidate`` seed group against each baseline seed group on each
    metric, over users on seed-averaged per-user values; Holm correction is applied per metric
    across the baselines (the family of comparisons one claim rests on). A group of one run is
    a plain run; the shown mean is the mean over seeds, ± their standard deviation. ``targets``:
    test one group of targets (e.g. ``cold``), over the users who have such a target."""
    for group in (candidate, *baselines):
        check_seed_group(group)
    for baseline in baselines:
        check_pairable(candidate[0], baseline[0])
        if targets:  # warm_in_group is measured over the users of users_warm, and so on
            users = f"users_{targets.split('_')[0]}"
            if not np.array_equal(candidate[0].get(users, []), baseline[0].get(users, [])):
                raise BenchError(f"runs {candidate[0]['run_id']} and {baseline[0]['run_id']} differ in {users}; "
                                 "a paired test needs the same users")
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        a = seed_averaged(candidate, metric, targets)
        a_low, a_high = bootstrap_interval(a)
        _, a_std = seed_spread(candidate, metric, targets)
        metric_rows = []
        for baseline in baselines:
            b = seed_averaged(baseline, metric, targets)
            t_p, w_p = paired_tests(a, b)
            b_low, b_high = bootstrap_interval(b)
            _, b_std = seed_spread(baseline, metric, targets)
            metric_rows.append({
                "baseline": describe_group(baseline), "metric": metric,
                "candidate_mean": float(a.mean()), "candidate_ci_low": a_low, "candidate_ci_high": a_high,
                "candidate_seeds": len(candidate), "candidate_seed_std": a_std,
                "baseline_mean": float(b.mean()), "baseline_ci_low": b_low, "baseline_ci_high": b_high,
                "baseline_seeds": len(baseline), "baseline_seed_std": b_std,
                "t_test_p": t_p, "wilcoxon_p": w_p})
        for row, adjusted in zip(metric_rows, holm([r["t_test_p"] for r in metric_rows])):
            row["t_test_p_holm"] = adjusted
            row["significant"] = adjusted < ALPHA
        rows.extend(metric_rows)
    return ComparisonReport(candidate=describe_group(candidate), rows=tuple(rows), targets=targets)
