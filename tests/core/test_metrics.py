import math

import numpy as np
import pytest

from bench.errors import BenchError
from bench.evaluation.metrics import MISSING, metrics_from_ranks, ranks_from_lists, ranks_from_scores


def test_pessimistic_ties_rank_target_after_every_equal_item():
    scores = np.array([[0.5, 0.5, 0.5, 0.1], [0.9, 0.2, 0.2, 0.2], [1.0, 1.0, 1.0, 1.0]])
    ranks, tied = ranks_from_scores(scores, np.array([1, 2, 0]))
    assert ranks.tolist() == [2, 3, 3]
    assert tied.tolist() == [2, 2, 3]


def test_all_equal_scores_get_nothing():
    scores = np.zeros((5, 100))
    ranks, _ = ranks_from_scores(scores, np.arange(5))
    values = metrics_from_ranks(ranks, (5, 10))
    assert all(v.sum() == 0 for v in values.values())


def test_nan_scores_are_refused():
    with pytest.raises(BenchError, match="NaN"):
        ranks_from_scores(np.array([[np.nan, 1.0]]), np.array([0]))


def _independent_metrics(score_row, target, k):
    # Straightforward, loop-based computation: sort by (-score, target last among ties).
    order = sorted(range(len(score_row)), key=lambda i: (-score_row[i], i == target))
    position = order.index(target)
    hit = 1.0 if position < k else 0.0
    return hit, (1.0 / math.log2(position + 2) if position < k else 0.0)


def test_metrics_match_an_independent_computation():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(200, 25)).astype(float)  # many ties on purpose
    targets = rng.integers(0, 25, size=200)
    ranks, _ = ranks_from_scores(scores, targets)
    values = metrics_from_ranks(ranks, (5, 10))
    for user in range(200):
        for k in (5, 10):
            hit, ndcg = _independent_metrics(scores[user], targets[user], k)
            assert values[f"HR@{k}"][user] == hit
            assert values[f"NDCG@{k}"][user] == pytest.approx(ndcg)


def test_hand_computed_values():
    ranks = np.array([0, 1, 4, 5, 9, 10, MISSING])
    values = metrics_from_ranks(ranks, (5, 10))
    assert values["HR@5"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert values["HR@10"].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert values["NDCG@5"][2] == pytest.approx(1 / math.log2(6))
    assert values["NDCG@10"][4] == pytest.approx(1 / math.log2(11))
    assert values["NDCG@10"][0] == 1.0


def test_ranks_from_lists_positions_and_misses():
    lists = np.array([[3, 1, 2], [0, 1, 2], [5, 4, 3]])
    assert ranks_from_lists(lists, np.array([2, 0, 9])).tolist() == [2, 0, MISSING]
