"""Run a fitted method over the users of a phase and measure it.

Score-based methods hand back scores and the harness ranks them (pessimistic ties).
Ranking methods hand back top-k lists; a list shorter than needed is refused rather than
silently scored as a miss. History masking, when switched on, applies alike to both: the
user's history items other than the phase's targets are removed from the ranking.

A phase may have several targets per user (temporal and published-split protocols); each
target is ranked among all items and the user's Recall/NDCG/HR come from all of them. Warm
and cold results take the same ranks restricted to targets that do (warm) or do not (cold)
occur in the training part, over the users who have such a target. On request (the test
phase of a run) the same targets are also ranked within their own group only, a warm target
among warm items and a cold one among cold items: SETRec's warm/cold protocol. Score-based
methods get these ranks from the same scores; a ranking method is asked again with the group
as ``candidates`` when it declares ``supports_candidates``, and has no in-group results otherwise.
Repeat and novel results split the same ranks by whether a target already occurs in the
user's history of the phase (history is not masked, so a model that ranks seen items first
collects the repeat hits).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from bench.config import EvalConfig
from bench.data.split import Phase, Split
from bench.errors import BenchError
from bench.evaluation.metrics import (MISSING, SubsetResult, ranks_from_lists, ranks_from_scores, ranks_within_groups,
                                      subset_metrics, user_metrics)
from bench.method import Method, RunContext


@dataclasses.dataclass(frozen=True)
class PhaseResult:
    users: np.ndarray  # evaluated users (split indices), in order; per-user arrays align with it
    per_user: dict[str, np.ndarray]
    ranks: np.ndarray  # one per target, users' targets in order (leave-one-out: one per user)
    owners: np.ndarray  # position in ``users`` of each target
    tied_users: int
    tied_items_total: int
    warm: SubsetResult | None
    cold: SubsetResult | None
    inference_seconds: float
    # The machine's 1-minute load average when ranking ended (None where the OS has none): a
    # time measured while other jobs shared the cores says so.
    load_average: float | None = None
    # Whether the phase reports warm/cold results (``reports_groups``); then, when asked for and
    # available, the same targets ranked within their own group too.
    reports_groups: bool = False
    warm_in_group: SubsetResult | None = None
    cold_in_group: SubsetResult | None = None
    # Per target (under leave-one-out: per user), whether the item is already in the user's
    # history of the phase; the repeat/novel results below are reported when any target is.
    repeat_targets: np.ndarray | None = None
    repeat: SubsetResult | None = None
    novel: SubsetResult | None = None
    # What the record stores so that every per-user value above derives from it again
    # (bench.evaluation.stored_ranks): the protocol's shape, each target's warm flag, and each
    # target's rank within its own group when measured.
    single_target: bool = True
    cutoffs: tuple[int, ...] = (5, 10)
    warm_targets: np.ndarray | None = None
    group_ranks: np.ndarray | None = None

    def means(self) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in self.per_user.items()}

    def inference(self) -> dict[str, Any]:
        """SETRec's "Inf. Time": ranking every evaluated user, data preparation excluded."""
        seconds = self.inference_seconds
        return {"seconds": round(seconds, 3), "users": int(len(self.users)),
                "users_per_second": round(len(self.users) / seconds, 3) if seconds > 0 else None,
                "load_average_1min": self.load_average, "cpu_count": os.cpu_count()}


def _masked_history(history: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return history[~np.isin(history, targets)]


def _ranks_for_scores(method: Method, users: np.ndarray, histories: list[np.ndarray], targets: list[np.ndarray],
                      rows: np.ndarray, n_items: int, config: EvalConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks among all items, ties, and the scores they came from (history masked)."""
    scores = np.asarray(method.score(users, histories), dtype=np.float64)
    if scores.shape != (len(users), n_items):
        raise BenchError(f"method {type(method).__name__} returned scores of shape {scores.shape}, "
                         f"expected {(len(users), n_items)}")
    if config.mask_history:
        masked = [_masked_history(h, t) for h, t in zip(histories, targets)]
        mask_rows = np.repeat(np.arange(len(users)), [len(m) for m in masked])
        scores[mask_rows, np.concatenate(masked).astype(np.int64)] = -np.inf
    return (*ranks_from_scores(scores, np.concatenate(targets), rows), scores)


def _group_ranks_for_scores(scores: np.ndarray, targets: np.ndarray, rows: np.ndarray,
                            warm_items: np.ndarray) -> np.ndarray:
    in_group = np.where(warm_items[targets][:, None], warm_items[None, :], ~warm_items[None, :])
    return ranks_within_groups(scores, targets, rows, in_group)


def _ranks_for_lists(method: Method, users: np.ndarray, histories: list[np.ndarray], targets: list[np.ndarray],
                     rows: np.ndarray, n_items: int, config: EvalConfig,
                     candidates: np.ndarray | None = None) -> np.ndarray:
    """Ranks of the targets in the method's lists (among ``candidates`` only, when given)."""
    k = max(config.cutoffs)
    extra = max((len(h) for h in histories), default=0) if config.mask_history else 0
    wanted = min(k + extra, n_items if candidates is None else int(candidates.sum()))
    lists = np.asarray(method.rank(users, histories, wanted) if candidates is None
                       else method.rank(users, histories, wanted, candidates=candidates))
    if lists.ndim != 2 or lists.shape[0] != len(users):
        raise BenchError(f"method {type(method).__name__} returned rankings of shape {lists.shape}")
    if lists.shape[1] < wanted:
        raise BenchError(f"method {type(method).__name__} returned {lists.shape[1]} items per user, "
                         f"the protocol needs {wanted} (raise its beam size)")
    if (lists < 0).any() or (lists >= n_items).any():
        raise BenchError(f"method {type(method).__name__} returned item indices outside 0..{n_items - 1}")
    if candidates is not None and not candidates[lists].all():
        raise BenchError(f"method {type(method).__name__} returned an item outside the candidates it was given")
    ordered = np.sort(lists, axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise BenchError(f"method {type(method).__name__} returned a ranking with a repeated item")
    if config.mask_history:
        kept_rows = []
        for row, history, user_targets in zip(lists, histories, targets):
            kept = row[~np.isin(row, _masked_history(history, user_targets))][:k]
            kept_rows.append(np.pad(kept, (0, k - len(kept)), constant_values=-1))
        lists = np.stack(kept_rows)
    return ranks_from_lists(lists[:, :k], np.concatenate(targets), rows)


def _group_ranks_for_lists(method: Method, users: np.ndarray, histories: list[np.ndarray],
                           targets: list[np.ndarray], rows: np.ndarray, n_items: int, config: EvalConfig,
                           warm_items: np.ndarray) -> np.ndarray:
    """Each target's rank within its group: the method ranks again, once per group, for the
    users with a target in it, with that group's items as candidates."""
    flat_targets = np.concatenate(targets)
    ranks = np.empty(len(flat_targets), dtype=np.int64)
    for group in (warm_items, ~warm_items):
        chosen = group[flat_targets]
        if not chosen.any():
            continue
        present = np.unique(rows[chosen])
        group_targets = [t[group[t]] for t in (targets[r] for r in present.tolist())]
        group_rows = np.searchsorted(present, rows[chosen])
        ranks[chosen] = _ranks_for_lists(method, users[present], [histories[r] for r in present.tolist()],
                                         group_targets, group_rows, n_items, config, candidates=group)
    return ranks


def targets_in_history(histories: list[np.ndarray], evaluated: np.ndarray, flat_targets: np.ndarray,
                   owners: np.ndarray, n_items: int) -> np.ndarray:
    """Per target: whether its item occurs in its user's history (one membership test over
    (user, item) keys, no loop per user)."""
    user_histories = [histories[u] for u in evaluated.tolist()]
    lengths = np.fromiter((len(h) for h in user_histories), dtype=np.int64, count=len(user_histories))
    history_items = np.concatenate(user_histories).astype(np.int64) if user_histories else np.zeros(0, np.int64)
    history_keys = np.repeat(np.arange(len(evaluated), dtype=np.int64), lengths) * n_items + history_items
    return np.isin(owners.astype(np.int64) * n_items + flat_targets, history_keys)


def phase_users(split: Split, phase: Phase, users: np.ndarray | None = None) -> np.ndarray:
    """The users a phase evaluates: those with a target, restricted to ``users`` when given."""
    with_targets = split.phase_users(phase)
    if users is None:
        return with_targets
    return np.intersect1d(np.asarray(users, dtype=np.int64), with_targets)


def reports_groups(split: Split, warm_targets: np.ndarray) -> bool:
    """Whether a phase reports warm/cold results: always with several targets per user,
    under leave-one-out when some target is cold."""
    return not split.single_target or not warm_targets.all()


def evaluate(method: Method, split: Split, phase: Phase, config: EvalConfig, context: RunContext,
             users: np.ndarray | None = None, in_group: bool = False) -> PhaseResult:
    """Rank and measure the phase's users (all with a target, or the given subset of them;
    a given user without a target in the phase is skipped). ``in_group``: also rank each
    warm (cold) target among warm (cold) items, when the phase reports warm/cold results."""
    evaluated = phase_users(split, phase, users)
    if len(evaluated) == 0:
        raise BenchError(f"no user has a {phase} target under the {split.protocol} protocol")
    method.prepare_phase(phase)
    histories = split.histories(phase)
    target_lists = split.target_lists(phase)
    counts = np.asarray([len(target_lists[u]) for u in evaluated.tolist()], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat_targets = np.concatenate([target_lists[u] for u in evaluated.tolist()]).astype(np.int64)
    ranks = np.empty(len(flat_targets), dtype=np.int64)
    tied = np.zeros(len(flat_targets), dtype=np.int64)
    owners = np.repeat(np.arange(len(evaluated)), counts)
    warm_items = split.warm_items()
    warm_targets = warm_items[flat_targets]
    scores_output = method.output == "scores"
    with_groups = reports_groups(split, warm_targets)
    grouped = in_group and with_groups \
        and (scores_output or method.supports_candidates)
    group_ranks = np.empty(len(flat_targets), dtype=np.int64)
    group_seconds = 0.0
    clock = time.perf_counter()
    starts = range(0, len(evaluated), config.batch_size)
    runtime = context.runtime if context.runtime.num_processes > 1 else None
    # Several processes: each ranks a contiguous block of whole batches, the very batches one
    # process would rank (so each user's result is one process's), then the blocks are gathered.
    mine = runtime.shard(len(starts)) if runtime is not None else np.arange(len(starts))
    for start in context.progress([starts[b] for b in mine.tolist()], desc=f"evaluate {phase}", unit="batch"):
        stop = min(start + config.batch_size, len(evaluated))
        batch = evaluated[start:stop]
        batch_histories = [histories[u] for u in batch.tolist()]
        batch_targets = [target_lists[u] for u in batch.tolist()]
        rows = owners[offsets[start]:offsets[stop]] - start
        where = slice(offsets[start], offsets[stop])
        if scores_output:
            ranks[where], tied[where], scores = _ranks_for_scores(method, batch, batch_histories, batch_targets,
                                                                  rows, split.n_items, config)
        else:
            ranks[where] = _ranks_for_lists(method, batch, batch_histories, batch_targets, rows, split.n_items,
                                            config)
        if grouped:  # not part of the inference time: the paper's one ranking is the one above
            group_clock = time.perf_counter()
            group_ranks[where] = _group_ranks_for_scores(scores, flat_targets[where], rows, warm_items) \
                if scores_output else _group_ranks_for_lists(method, batch, batch_histories, batch_targets, rows,
                                                             split.n_items, config, warm_items)
            group_seconds += time.perf_counter() - group_clock
    if runtime is not None:
        first_user = starts[mine[0]] if len(mine) else 0
        last_user = min(starts[mine[-1]] + config.batch_size, len(evaluated)) if len(mine) else 0
        mine_targets = slice(offsets[first_user], offsets[last_user])
        ranks = runtime.gather_shards(ranks[mine_targets], len(ranks))
        tied = runtime.gather_shards(tied[mine_targets], len(tied))
        if grouped:
            group_ranks = runtime.gather_shards(group_ranks[mine_targets], len(group_ranks))
    seconds = time.perf_counter() - clock - group_seconds
    repeated = targets_in_history(histories, evaluated, flat_targets, owners, split.n_items)
    load_average = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    cutoffs, single = config.cutoffs, split.single_target
    per_user = user_metrics(ranks, owners, len(evaluated), cutoffs, single)
    tied_per_user = np.bincount(owners, weights=(tied > 0).astype(np.float64), minlength=len(evaluated))
    return PhaseResult(users=evaluated, per_user=per_user, ranks=ranks, owners=owners,
                       tied_users=int((tied_per_user > 0).sum()), tied_items_total=int(tied.sum()),
                       warm=subset_metrics(evaluated, ranks, owners, warm_targets, cutoffs, single),
                       cold=subset_metrics(evaluated, ranks, owners, ~warm_targets, cutoffs, single),
                       inference_seconds=seconds, load_average=load_average, reports_groups=with_groups,
                       warm_in_group=subset_metrics(evaluated, group_ranks, owners, warm_targets, cutoffs,
                                                    single) if grouped else None,
                       cold_in_group=subset_metrics(evaluated, group_ranks, owners, ~warm_targets, cutoffs,
                                                    single) if grouped else None,
                       single_target=single, cutoffs=cutoffs, warm_targets=warm_targets,
                       group_ranks=group_ranks if grouped else None, repeat_targets=repeated,
                       repeat=subset_metrics(evaluated, ranks, owners, repeated, cutoffs, single),
                       novel=subset_metrics(evaluated, ranks, owners, ~repeated, cutoffs, single)
                       if repeated.any() else None)


__all__ = ["PhaseResult", "SubsetResult", "evaluate", "phase_users", "reports_groups", "targets_in_history", "MISSING"]
