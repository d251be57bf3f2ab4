"""Ranks of the targets and HR/NDCG (one target) or Recall/NDCG/HR (several) at k,
vectorised over users.

Ranks are 0-based (0 = the target is first). A target that a ranking method did not
return has rank ``MISSING`` and counts as a miss at every cutoff. With several targets per
user, each target is ranked among all items (pessimistic ties) and the user's metrics are
computed from the ranks of all of their targets (formulas in docs/evaluation.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.errors import BenchError

MISSING = np.iinfo(np.int64).max


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray,
                      rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pessimistic rank of each target: every other item scored >= the target is ranked
    above it, so a model that scores all items equal ranks every target last.

    ``rows[j]`` is the score row of target ``j`` (default: one target per row).
    Returns ``(ranks, tied)``, ``tied`` being how many other items share the target's score.
    """
    if np.isnan(scores).any():
        raise BenchError("a method returned NaN scores")
    rows = np.arange(len(targets)) if rows is None else rows
    target_scores = scores[rows, targets][:, None]
    row_scores = scores if len(rows) == len(scores) and np.array_equal(rows, np.arange(len(scores))) else scores[rows]
    above = (row_scores > target_scores).sum(axis=1)
    tied = (row_scores == target_scores).sum(axis=1) - 1
    return (above + tied).astype(np.int64), tied.astype(np.int64)


def ranks_within_groups(scores: np.ndarray, targets: np.ndarray, rows: np.ndarray,
                        in_group: np.ndarray) -> np.ndarray:
    """Pessimistic rank of each target among the items of its own group only (SETRec's warm and
    cold protocol: a warm target against warm items, a cold one against cold items).
    ``in_group[j]`` is a bool mask over items, the group of target ``j`` (which contains it)."""
    target_scores = scores[rows, targets][:, None]
    return (((scores[rows] >= target_scores) & in_group).sum(axis=1) - 1).astype(np.int64)


def ranks_from_lists(ranked_items: np.ndarray, targets: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Position of each target in its ranked list (``rows[j]`` for target ``j``), ``MISSING`` where absent."""
    if rows is not None:
        ranked_items = ranked_items[rows]
    hits = ranked_items == targets[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1), MISSING).astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray, cutoffs: tuple[int, ...]) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    safe = np.where(ranks == MISSING, 0, ranks).astype(np.float64)
    for k in cutoffs:
        hit = ranks < k
        values[f"HR@{k}"] = hit.astype(np.float64)
        values[f"NDCG@{k}"] = np.where(hit, 1.0 / np.log2(safe + 2.0), 0.0)
    return values


def metrics_from_target_ranks(ranks: np.ndarray, owners: np.ndarray, n_users: int,
                              cutoffs: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per-user Recall@k, NDCG@k and HR@k from the ranks of several targets per user.

    ``owners[j]`` is the user (0..n_users-1) of target ``j``; every user has at least one.
    Recall@k = hits / |targets|; NDCG@k = DCG@k / IDCG@k with IDCG@k the DCG of
    min(|targets|, k) hits at the top; HR@k = 1 if any target is in the top k.
    """
    counts = np.bincount(owners, minlength=n_users).astype(np.float64)
    if (counts == 0).any():
        raise BenchError("every evaluated user needs at least one target")
    safe = np.where(ranks == MISSING, 0, ranks).astype(np.float64)
    values: dict[str, np.ndarray] = {}
    for k in cutoffs:
        hit = ranks < k
        hits = np.bincount(owners, weights=hit.astype(np.float64), minlength=n_users)
        dcg = np.bincount(owners, weights=np.where(hit, 1.0 / np.log2(safe + 2.0), 0.0), minlength=n_users)
        ideal = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
        idcg = ideal[np.minimum(counts, k).astype(np.int64) - 1]
        values[f"Recall@{k}"] = hits / counts
        values[f"NDCG@{k}"] = dcg / idcg
        values[f"HR@{k}"] = (hits > 0).astype(np.float64)
    return values


def metric_names(cutoffs: tuple[int, ...], multi_target: bool = False) -> list[str]:
    if multi_target:
        return [name for k in cutoffs for name in (f"Recall@{k}", f"NDCG@{k}", f"HR@{k}")]
    return [name for k in cutoffs for name in (f"HR@{k}", f"NDCG@{k}")]


@dataclasses.dataclass(frozen=True)
class SubsetResult:
    """Metrics over one group of targets (warm or cold): per user, aligned with ``users``."""

    users: np.ndarray
    per_user: dict[str, np.ndarray]
    targets: int

    def means(self) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in self.per_user.items()}


def user_metrics(ranks: np.ndarray, owners: np.ndarray, n_users: int, cutoffs: tuple[int, ...],
                 single_target: bool) -> dict[str, np.ndarray]:
    """Per-user metrics from the ranks of the targets (``owners[j]``: the user of target ``j``)."""
    if single_target:
        return metrics_from_ranks(ranks, cutoffs)
    return metrics_from_target_ranks(ranks, owners, n_users, cutoffs)


def subset_metrics(users: np.ndarray, ranks: np.ndarray, owners: np.ndarray, chosen: np.ndarray,
                   cutoffs: tuple[int, ...], single_target: bool) -> SubsetResult | None:
    """The metrics of the chosen targets only, over the users who have one."""
    if not chosen.any():
        return None
    kept_owners = owners[chosen]
    present = np.unique(kept_owners)
    renumbered = np.searchsorted(present, kept_owners)
    per_user = user_metrics(ranks[chosen], renumbered, len(present), cutoffs, single_target)
    return SubsetResult(users=users[present], per_user=per_user, targets=int(chosen.sum()))
