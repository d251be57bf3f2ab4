"""Run a fitted method over every user of a phase and measure it.

Score-based methods hand back scores and the harness ranks them (pessimistic ties).
Ranking methods hand back top-k lists; a list shorter than needed is refused rather than
silently scored as a miss. History masking, when switched on, applies alike to both: the
user's history items other than the target are removed from the ranking.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.config import EvalConfig
from bench.data.split import Phase, Split
from bench.errors import BenchError
from bench.evaluation.metrics import MISSING, metrics_from_ranks, ranks_from_lists, ranks_from_scores
from bench.method import Method, RunContext


@dataclasses.dataclass(frozen=True)
class PhaseResult:
    per_user: dict[str, np.ndarray]
    ranks: np.ndarray
    tied_users: int
    tied_items_total: int

    def means(self) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in self.per_user.items()}


def _masked_history(history: np.ndarray, target: int) -> np.ndarray:
    return history[history != target]


def _ranks_for_scores(method: Method, users: np.ndarray, histories: list[np.ndarray], targets: np.ndarray,
                      n_items: int, config: EvalConfig) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(method.score(users, histories), dtype=np.float64)
    if scores.shape != (len(users), n_items):
        raise BenchError(f"method {type(method).__name__} returned scores of shape {scores.shape}, "
                         f"expected {(len(users), n_items)}")
    if config.mask_history:
        rows = np.concatenate([np.full(len(_masked_history(h, t)), i) for i, (h, t)
                               in enumerate(zip(histories, targets))]).astype(np.int64)
        columns = np.concatenate([_masked_history(h, t) for h, t in zip(histories, targets)]).astype(np.int64)
        scores[rows, columns] = -np.inf
    return ranks_from_scores(scores, targets)


def _ranks_for_lists(method: Method, users: np.ndarray, histories: list[np.ndarray], targets: np.ndarray,
                     n_items: int, config: EvalConfig) -> np.ndarray:
    k = max(config.cutoffs)
    extra = max((len(h) for h in histories), default=0) if config.mask_history else 0
    wanted = min(k + extra, n_items)
    lists = np.asarray(method.rank(users, histories, wanted))
    if lists.ndim != 2 or lists.shape[0] != len(users):
        raise BenchError(f"method {type(method).__name__} returned rankings of shape {lists.shape}")
    if lists.shape[1] < wanted:
        raise BenchError(f"method {type(method).__name__} returned {lists.shape[1]} items per user, "
                         f"the protocol needs {wanted} (raise its beam size)")
    if (lists < 0).any() or (lists >= n_items).any():
        raise BenchError(f"method {type(method).__name__} returned item indices outside 0..{n_items - 1}")
    ordered = np.sort(lists, axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise BenchError(f"method {type(method).__name__} returned a ranking with a repeated item")
    if config.mask_history:
        kept_rows = []
        for row, history, target in zip(lists, histories, targets):
            kept = row[~np.isin(row, _masked_history(history, target))][:k]
            kept_rows.append(np.pad(kept, (0, k - len(kept)), constant_values=-1))
        lists = np.stack(kept_rows)
    return ranks_from_lists(lists[:, :k], targets)


def evaluate(method: Method, split: Split, phase: Phase, config: EvalConfig, context: RunContext) -> PhaseResult:
    histories = split.histories(phase)
    targets = split.targets(phase)
    ranks = np.empty(split.n_users, dtype=np.int64)
    tied = np.zeros(split.n_users, dtype=np.int64)
    starts = range(0, split.n_users, config.batch_size)
    for start in context.progress(starts, desc=f"evaluate {phase}", unit="batch"):
        users = np.arange(start, min(start + config.batch_size, split.n_users))
        batch_histories = [histories[u] for u in users]
        if method.output == "scores":
            ranks[users], tied[users] = _ranks_for_scores(method, users, batch_histories, targets[users],
                                                          split.n_items, config)
        else:
            ranks[users] = _ranks_for_lists(method, users, batch_histories, targets[users], split.n_items, config)
    return PhaseResult(per_user=metrics_from_ranks(ranks, config.cutoffs), ranks=ranks,
                       tied_users=int((tied > 0).sum()), tied_items_total=int(tied.sum()))


__all__ = ["PhaseResult", "evaluate", "MISSING"]
