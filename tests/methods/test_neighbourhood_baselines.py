"""item-knn and sknn choose neighbourhood size and decay on validation only; recent ranks the
history most recent first; the shared sparse helpers against hand computations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sparse

from bench.config import EvalConfig, resolve
from bench.data.dataset import build_dataset
from bench.data.split import Split
from bench.errors import BenchError
from bench.evaluation.protocol import evaluate
from bench.method import RunContext, TrainingData
from bench.registry import methods
from methods.knn.shared import keep_top_per_row, recency_weighted, then_popularity
from tests.engine.test_selection import GuardedTargets

A, B, C, D, H = 0, 1, 2, 3, 4
E_ITEMS = list(range(5, 17))  # twelve neighbours of A
F_ITEMS = list(range(17, 29))  # twelve neighbours of B
N_ITEMS = 29
PROBES = 4


def disagreeing_split() -> Split:
    """Validation rewards the whole history, the test phase only the last item.

    Probe users trained on [A, B] have validation target C, a strong neighbour of the older
    item A: only a decay that keeps A's weight (1) finds it. Their test history [A, B, C] has
    target D, a weak neighbour of C alone: with the whole history A's twelve stronger neighbours
    bury it, with the last item only (decay 0) it is second. Background users have no targets."""
    background = ([[A, C]] * 6 + [[A, e] for e in E_ITEMS for _ in range(2)]
                  + [[B, f] for f in F_ITEMS for _ in range(2)] + [[C, D]] + [[D, H]] * 10)
    train = [np.array(s) for s in [[A, B]] * PROBES + background]
    empty = np.zeros(0, dtype=np.int64)
    return Split(train=train, valid_items=[np.array([C])] * PROBES + [empty] * len(background),
                 test_items=[np.array([D])] * PROBES + [empty] * len(background), n_items=N_ITEMS,
                 protocol="temporal")


def catalogue(n_items: int):
    """A dataset whose items are numbered 0..n_items-1 (the split at hand gives the sequences)."""
    return build_dataset("fixture", [("u", [f"i{item}" for item in range(n_items)])], {}, {}, {"format": "test"})


def fitted(name: str, split: Split, tmp_path: Path, **sets):
    method_class = methods().get(name)
    resolved = resolve(name, method_class.config_class, method_class.profiles, "cpu", {}, sets)
    context = RunContext(work_dir=tmp_path / name, seed=0, profile="cpu", show_progress=False)
    context.work_dir.mkdir(parents=True, exist_ok=True)
    method = method_class(resolved.method, context)
    method.fit(TrainingData(dataset=catalogue(split.n_items), split=split))
    return method, context


@pytest.mark.parametrize("name", ["item-knn", "sknn"])
def test_decay_is_chosen_on_validation_where_the_test_targets_would_choose_another(name: str, tmp_path: Path):
    split = disagreeing_split()
    guarded = dataclasses.replace(split, test_items=GuardedTargets(split.test_items))
    GuardedTargets.released = False
    method, context = fitted(name, guarded, tmp_path, neighbours="50", decay="0 1")
    selection = method.metadata()["selection"]
    assert selection["chosen"] == {"neighbours": 50, "decay": 1.0}
    by_decay = {entry["decay"]: entry["validation"]["NDCG@10"] for entry in selection["tried"]}
    assert by_decay[1.0] > by_decay[0.0]
    assert selection["phase"] == "valid" and selection["n_users"] == PROBES
    # The fixture bites: ranked on the test targets, the other decay would have won.
    GuardedTargets.released = True
    test_ndcg = {}
    for decay in (0.0, 1.0):
        method._apply({"neighbours": 50, "decay": decay})
        test_ndcg[decay] = evaluate(method, guarded, "test", EvalConfig(), context).means()["NDCG@10"]
    assert test_ndcg[0.0] > test_ndcg[1.0]


@pytest.mark.parametrize("name", ["item-knn", "sknn"])
def test_neighbourhood_options_refuse_bad_values(name: str) -> None:
    method_class = methods().get(name)
    for key, value in (("neighbours", "0 10"), ("decay", "1.5"), ("validation_users", "-1")):
        with pytest.raises(BenchError, match=key):
            resolve(name, method_class.config_class, method_class.profiles, "cpu", {}, {key: value})


def test_recent_ranks_the_history_most_recent_first_then_popularity(tmp_path: Path) -> None:
    train = [np.array([5, 5, 5, 6]), np.array([5, 6, 1]), np.array([3, 5, 3, 7])]
    empty = np.zeros(0, dtype=np.int64)
    split = Split(train=train, valid_items=[empty] * 3, test_items=[empty] * 3, n_items=8, protocol="temporal")
    method, _ = fitted("recent", split, tmp_path)
    scores = method.score(np.array([2]), [np.array([3, 5, 3, 7])])[0]
    # history: 7, then 3 (its latest position), then 5; the rest by training count: 6 (2), 1 (1), then ties.
    assert list(np.argsort(-scores, kind="stable")[:5]) == [7, 3, 5, 6, 1]


def test_recency_weights_keep_the_latest_position_of_a_repeated_item() -> None:
    weights = recency_weighted([np.array([2, 0, 2, 1]), np.array([1])], n_items=3, decay=0.5).toarray()
    assert np.allclose(weights, [[0.25, 1.0, 0.5], [0.0, 1.0, 0.0]])


def test_keep_top_per_row_keeps_the_largest_entries_lower_column_on_ties() -> None:
    matrix = sparse.csr_matrix(np.array([[0.1, 0.5, 0.5, 0.2], [0.0, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    kept = keep_top_per_row(matrix, 2).toarray()
    assert np.allclose(kept, [[0.0, 0.5, 0.5, 0.0], [0.0, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert np.allclose(keep_top_per_row(sparse.csr_matrix(np.array([[0.4, 0.4, 0.4]])), 1).toarray(), [[0.4, 0, 0]])


def test_items_without_a_neighbourhood_score_follow_the_scored_ones_by_popularity() -> None:
    ordered = then_popularity(np.array([[0.5, 0.0, 1e-15, 0.0]]), np.array([0.1, 0.3, 0.9, 0.2]))
    assert list(np.argsort(-ordered[0])) == [0, 2, 1, 3]
