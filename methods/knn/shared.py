"""What the neighbourhood baselines share: the training incidence matrix, recency-weighted
histories, the popularity order after the scored items, and the choice of hyper-parameters on validation.

Everything is sparse matrix algebra over all users of a batch at once (scipy.sparse); the
only per-user Python is building the flat index arrays of a batch's histories.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sparse

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, UNIT_INTERVAL, Options, option
from bench.data.split import Split
from bench.engine.selection import SELECTION_METRIC, validation_scorer
from bench.errors import BenchError
from bench.method import Method

LOG = logging.getLogger(__name__)

def flat_histories(histories: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, item and distance from the end (0 = most recent) of every history position."""
    lengths = np.fromiter((len(history) for history in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories)), lengths)
    items = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if len(histories) \
        else np.zeros(0, dtype=np.int64)
    ends = np.repeat(np.cumsum(lengths), lengths)
    distance = ends - 1 - np.arange(len(items))
    return rows, items, distance


def incidence(sequences: Sequence[np.ndarray], n_items: int) -> sparse.csr_matrix:
    """Binary ``[len(sequences), n_items]``: 1 where the sequence holds the item (once or more)."""
    rows, items, _ = flat_histories(sequences)
    matrix = sparse.csr_matrix((np.ones(len(items)), (rows, items)), shape=(len(sequences), n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # an item repeated in a sequence counts once
    return matrix


def recency_weighted(histories: Sequence[np.ndarray], n_items: int, decay: float) -> sparse.csr_matrix:
    """``[len(histories), n_items]``: the item at distance d from the end weighs ``decay ** d``;
    an item seen several times keeps its most recent (largest) weight."""
    rows, items, distance = flat_histories(histories)
    weights = np.power(float(decay), distance.astype(np.float64))
    dense_keys = rows * n_items + items
    order = np.lexsort((-weights, dense_keys))  # per (row, item): the largest weight first
    first = np.ones(len(order), dtype=bool)
    first[1:] = dense_keys[order][1:] != dense_keys[order][:-1]
    kept = order[first]
    return sparse.csr_matrix((weights[kept], (rows[kept], items[kept])), shape=(len(histories), n_items))


def popularity_share(train: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Each item's training count over (the largest count + 1): popularity order, in [0, 1)."""
    counts = np.bincount(np.concatenate(train).astype(np.int64), minlength=n_items).astype(np.float64)
    return counts / (counts.max() + 1.0)


def then_popularity(scores: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Neighbourhood scores (non-negative) first; the items they leave at 0 after all scored
    ones, in popularity order (``popularity`` from :func:`popularity_share`)."""
    return np.where(scores > 0, scores, popularity[None, :] - 1.0)


def keep_top_per_row(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """The ``k`` largest entries of each row (ties: the lower column), the rest dropped."""
    matrix = matrix.tocsr()
    row_lengths = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), row_lengths)
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    place_in_row = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], row_lengths)
    kept = order[place_in_row < k]
    return sparse.csr_matrix((matrix.data[kept], (rows[kept], matrix.indices[kept])), shape=matrix.shape)


def parameter_grid(choices: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, in the order the choices are listed (the first wins a tie)."""
    for name, values in choices.items():
        if not values:
            raise BenchError(f"config key '{name}' needs at least one value to choose from")
    names = list(choices)
    return [dict(zip(names, values)) for values in itertools.product(*(choices[name] for name in names))]


def choose_on_validation(method: Method, split: Split, grid: list[dict[str, Any]], validation_users: int,
                         apply: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Rank the validation targets (history = training part) under every parameter set of
    ``grid``, keep the best NDCG@10 (a tie keeps the earlier one) and leave it applied.
    Returns the record's ``selection``: what was tried, on which users, and what was chosen.
    Test targets are not read."""
    validate = validation_scorer(method, split, validation_users, method.context)
    tried = []
    for parameters in grid:
        started = time.perf_counter()
        apply(parameters)
        tried.append({**parameters, "validation": {name: round(value, 6) for name, value in validate().items()},
                      "seconds": round(time.perf_counter() - started, 2)})
        LOG.info("validation %d/%d %s", len(tried), len(grid), tried[-1])
    best = max(range(len(tried)), key=lambda index: (tried[index]["validation"][SELECTION_METRIC], -index))
    apply(grid[best])
    return {**validate.describe(), "chosen": grid[best], "tried": tried}


@dataclasses.dataclass(frozen=True)
class NeighbourhoodConfig(Options):
    """The options both neighbourhood baselines have: candidate values, chosen on validation."""

    neighbours: tuple[int, ...] = option((20, 50, 100, 200), "candidate neighbourhood sizes, chosen on validation",
                                         range=AT_LEAST_ONE)
    decay: tuple[float, ...] = option(
        (1.0, 0.8, 0.5, 0.2, 0.1),
        "candidate recency decays: a history item d positions before the last weighs decay**d (1: all alike), "
        "chosen on validation", range=UNIT_INTERVAL)
    validation_users: int = option(
        0, "users whose validation target chooses the parameters (0: all with one, else a sample drawn with "
           "the run's seed)", range=NON_NEGATIVE)

    def grid(self) -> list[dict[str, Any]]:
        return parameter_grid({"neighbours": self.neighbours, "decay": self.decay})
