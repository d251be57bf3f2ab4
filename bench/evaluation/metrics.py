"""Ranks of the target and HR/NDCG at k, vectorised over users.

Ranks are 0-based (0 = the target is first). A target that a ranking method did not
return has rank ``MISSING`` and counts as a miss at every cutoff.
"""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError

MISSING = np.iinfo(np.int64).max


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pessimistic rank of each target: every other item scored >= the target is ranked
    above it, so a model that scores all items equal ranks every target last.

    Returns ``(ranks, tied)``, ``tied`` being how many other items share the target's score.
    """
    if np.isnan(scores).any():
        raise BenchError("a method returned NaN scores")
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    above = (scores > target_scores).sum(axis=1)
    tied = (scores == target_scores).sum(axis=1) - 1
    return (above + tied).astype(np.int64), tied.astype(np.int64)


def ranks_from_lists(ranked_items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Position of each target in its ranked list, ``MISSING`` where it is absent."""
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


def metric_names(cutoffs: tuple[int, ...]) -> list[str]:
    return [name for k in cutoffs for name in (f"HR@{k}", f"NDCG@{k}")]
