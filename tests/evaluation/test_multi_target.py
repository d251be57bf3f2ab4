"""Several targets per user: Recall/NDCG/HR by hand, warm/cold, user subsets, inference time."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest

from bench.config import EvalConfig
from bench.data.split import Split
from bench.errors import BenchError
from bench.evaluation.metrics import MISSING, metrics_from_target_ranks
from bench.evaluation.protocol import evaluate
from bench.method import Method, RunContext, TrainingData
from bench.statistics import check_pairable


@dataclasses.dataclass(frozen=True)
class NoConfig:
    pass


class FixedOrder(Method):
    """Every user gets items ranked 0, 1, 2, ... (score = -index)."""

    config_class = NoConfig

    def fit(self, data: TrainingData) -> None:
        pass

    def score(self, users, histories):
        return np.tile(-np.arange(10, dtype=float), (len(users), 1))


class FixedLists(FixedOrder):
    output = "ranking"

    def rank(self, users, histories, k):
        return np.tile(np.arange(k), (len(users), 1))


def context(tmp_path):
    return RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)


def test_recall_and_ndcg_of_several_targets_by_hand():
    # user 0: targets at ranks 0, 3, 7 (3 targets); user 1: one target at rank 2; user 2: a missed target
    ranks = np.array([0, 3, 7, 2, MISSING])
    owners = np.array([0, 0, 0, 1, 2])
    values = metrics_from_target_ranks(ranks, owners, 3, (5,))
    d = lambda rank: 1 / math.log2(rank + 2)  # noqa: E731
    assert values["Recall@5"] == pytest.approx([2 / 3, 1.0, 0.0])
    assert values["HR@5"].tolist() == [1.0, 1.0, 0.0]
    # user 0: DCG = 1/log2(2) + 1/log2(5); IDCG = three hits at the top = 1 + 1/log2(3) + 1/log2(4)
    assert values["NDCG@5"][0] == pytest.approx((d(0) + d(3)) / (d(0) + d(1) + d(2)))
    assert values["NDCG@5"][1] == pytest.approx(d(2))
    # At k=2 user 0's IDCG has only two terms: min(|targets|, k)
    at_two = metrics_from_target_ranks(ranks, owners, 3, (2,))
    assert at_two["NDCG@2"][0] == pytest.approx(d(0) / (d(0) + d(1)))
    assert at_two["Recall@2"][0] == pytest.approx(1 / 3)


def multi_split() -> Split:
    # 10 items; training uses items 0..5 only, so 6..9 are cold.
    return Split(train=[np.array([5, 4]), np.array([3]), np.array([2, 1, 0])],
                 valid_items=[np.array([0]), np.array([], dtype=np.int64), np.array([4, 5])],
                 test_items=[np.array([1, 7, 3]), np.array([8]), np.array([], dtype=np.int64)],
                 n_items=10, protocol="temporal")


@pytest.mark.parametrize("method_class", [FixedOrder, FixedLists])
def test_evaluate_ranks_every_target_and_splits_warm_and_cold(method_class, tmp_path):
    split = multi_split()
    method = method_class(NoConfig(), context(tmp_path))
    result = evaluate(method, split, "test", EvalConfig(cutoffs=(5,), batch_size=1), context(tmp_path))
    assert result.users.tolist() == [0, 1]  # user 2 has no test target: skipped
    assert result.ranks.tolist() == [1, 7, 3, 8] if method_class is FixedOrder else [1, MISSING, 3, MISSING]
    d = lambda rank: 1 / math.log2(rank + 2)  # noqa: E731
    assert result.per_user["Recall@5"] == pytest.approx([2 / 3, 0.0])
    assert result.per_user["NDCG@5"][0] == pytest.approx((d(1) + d(3)) / (d(0) + d(1) + d(2)))
    # warm targets: 1 and 3 of user 0; cold: 7 of user 0, 8 of user 1
    assert result.warm.users.tolist() == [0] and result.warm.targets == 2
    assert result.warm.per_user["Recall@5"].tolist() == [1.0]
    assert result.warm.per_user["NDCG@5"][0] == pytest.approx((d(1) + d(3)) / (d(0) + d(1)))
    assert result.cold.users.tolist() == [0, 1] and result.cold.targets == 2
    assert result.cold.per_user["Recall@5"].tolist() == [0.0, 0.0]
    assert result.inference()["users"] == 2 and result.inference_seconds >= 0
    # the machine's load when the ranking ended, so a time measured on a busy machine says so
    assert result.inference()["cpu_count"] == os.cpu_count() and result.inference()["load_average_1min"] >= 0


def test_users_subset_and_masking_of_several_targets(tmp_path):
    split = multi_split()
    method = FixedOrder(NoConfig(), context(tmp_path))
    valid = evaluate(method, split, "valid", EvalConfig(cutoffs=(5,)), context(tmp_path), users=np.array([1, 2]))
    assert valid.users.tolist() == [2]  # user 1 has no validation target
    assert valid.per_user["Recall@5"].tolist() == [0.5]  # targets 4, 5 at ranks 4, 5
    # masking removes history items 2, 1, 0 but not the targets 4, 5: they move up to ranks 1, 2
    masked = evaluate(method, split, "valid", EvalConfig(cutoffs=(5,), mask_history=True), context(tmp_path),
                      users=np.array([2]))
    assert masked.ranks.tolist() == [1, 2]
    with pytest.raises(BenchError, match="no user has a valid target"):
        evaluate(method, split, "valid", EvalConfig(), context(tmp_path), users=np.array([1]))


def test_compare_refuses_runs_of_different_protocols():
    base = {"dataset": "toys", "config": {"eval": {}}}
    a = {**base, "run_id": "a", "split": {"protocol": "temporal", "digest": "x"}}
    b = {**base, "run_id": "b", "split": {"protocol": "leave-one-out", "digest": "x"}}
    with pytest.raises(BenchError, match="use different split protocols"):
        check_pairable(a, b)


class CandidateLists(FixedLists):
    """Ranks items by index among the candidates it is given (as a constrained beam search does)."""

    supports_candidates = True

    def rank(self, users, histories, k, candidates=None):
        order = np.arange(10) if candidates is None else np.flatnonzero(candidates)
        return np.tile(order[:k], (len(users), 1))


@pytest.mark.parametrize("method_class", [FixedOrder, CandidateLists])
def test_warm_and_cold_targets_ranked_within_their_group(method_class, tmp_path):
    """SETRec's protocol: cold targets 7 and 8 rank 1st and 2nd among the cold items 6..9, though
    7th and 8th among all items; warm targets 1 and 3 keep their ranks (items 0..5 are warm)."""
    split = multi_split()
    method = method_class(NoConfig(), context(tmp_path))
    result = evaluate(method, split, "test", EvalConfig(cutoffs=(5,)), context(tmp_path), in_group=True)
    assert result.cold.per_user["Recall@5"].tolist() == [0.0, 0.0]
    assert result.cold_in_group.users.tolist() == [0, 1]
    assert result.cold_in_group.per_user["Recall@5"].tolist() == [1.0, 1.0]
    d = lambda rank: 1 / math.log2(rank + 2)  # noqa: E731
    assert result.cold_in_group.per_user["NDCG@5"].tolist() == pytest.approx([d(1), d(2)])
    assert result.warm_in_group.per_user["NDCG@5"] == pytest.approx(result.warm.per_user["NDCG@5"])
    assert result.per_user["Recall@5"] == pytest.approx([2 / 3, 0.0])  # the all-items ranks are unchanged
    plain = evaluate(method, split, "test", EvalConfig(cutoffs=(5,)), context(tmp_path))
    assert plain.warm_in_group is None and plain.cold_in_group is None


def test_ranking_method_without_candidates_gets_no_within_group_results(tmp_path):
    split = multi_split()
    result = evaluate(FixedLists(NoConfig(), context(tmp_path)), split, "test", EvalConfig(cutoffs=(5,)),
                      context(tmp_path), in_group=True)
    assert result.cold is not None and result.cold_in_group is None and result.warm_in_group is None


def test_within_group_ranks_are_pessimistic_about_ties():
    from bench.evaluation.metrics import ranks_within_groups

    scores = np.array([[3.0, 1.0, 1.0, 1.0, 0.0]])
    groups = np.array([[True, True, False, True, False]])  # target 1's group: items 0, 1, 3
    # item 0 scores higher and item 3 ties inside the group; item 2 ties outside it and does not count
    assert ranks_within_groups(scores, np.array([1]), np.array([0]), groups).tolist() == [2]
