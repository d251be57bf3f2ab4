import dataclasses

import numpy as np
import pytest

from bench.config import EvalConfig
from bench.data.split import leave_one_out
from bench.errors import BenchError
from bench.evaluation.protocol import evaluate
from bench.method import Method, RunContext, TrainingData


@dataclasses.dataclass(frozen=True)
class NoConfig:
    pass


class FixedScores(Method):
    """Scores the last history item highest, then items by index."""
    config_class = NoConfig

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items

    def score(self, users, histories):
        scores = np.tile(-np.arange(self.n_items, dtype=float), (len(users), 1))
        for row, history in enumerate(histories):
            scores[row, history[-1]] = 10.0
        return scores


class FixedLists(Method):
    config_class = NoConfig
    output = "ranking"

    def __init__(self, config, context, length=None, repeat=False):
        super().__init__(config, context)
        self.length, self.repeat = length, repeat

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items

    def rank(self, users, histories, k):
        length = self.length or k
        lists = np.tile(np.arange(length), (len(users), 1))
        if self.repeat:
            lists[:, 1] = lists[:, 0]
        return lists


def context(tmp_path):
    return RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)


def fitted(method, tiny):
    split = leave_one_out(tiny)
    method.fit(TrainingData(dataset=tiny, split=split))
    return split


def test_scores_are_ranked_by_the_harness(tiny, tmp_path):
    method = FixedScores(NoConfig(), context(tmp_path))
    split = fitted(method, tiny)
    result = evaluate(method, split, "test", EvalConfig(batch_size=7), context(tmp_path))
    histories = split.histories("test")
    for user in range(split.n_users):
        target, last = split.test_target[user], histories[user][-1]
        # items ranked: last item first, then 0, 1, 2, ... skipping it
        order = [last] + [i for i in range(tiny.n_items) if i != last]
        assert result.ranks[user] == order.index(target)


def test_history_masking_removes_history_but_not_the_target(tiny, tmp_path):
    method = FixedScores(NoConfig(), context(tmp_path))
    split = fitted(method, tiny)
    result = evaluate(method, split, "test", EvalConfig(mask_history=True), context(tmp_path))
    histories = split.histories("test")
    for user in range(split.n_users):
        masked = set(histories[user].tolist()) - {split.test_target[user]}
        order = [i for i in [histories[user][-1]] + list(range(tiny.n_items)) if i not in masked]
        order = list(dict.fromkeys(order))
        assert result.ranks[user] == order.index(split.test_target[user])


def test_ranking_methods_short_or_repeated_lists_are_refused(tiny, tmp_path):
    short = FixedLists(NoConfig(), context(tmp_path), length=5)
    split = fitted(short, tiny)
    with pytest.raises(BenchError, match="returned 5 items per user, the protocol needs 10"):
        evaluate(short, split, "test", EvalConfig(), context(tmp_path))
    repeated = FixedLists(NoConfig(), context(tmp_path), repeat=True)
    fitted(repeated, tiny)
    with pytest.raises(BenchError, match="repeated item"):
        evaluate(repeated, split, "test", EvalConfig(), context(tmp_path))


def test_ranking_methods_need_longer_lists_when_history_is_masked(tiny, tmp_path):
    method = FixedLists(NoConfig(), context(tmp_path))
    split = fitted(method, tiny)
    result = evaluate(method, split, "test", EvalConfig(mask_history=True), context(tmp_path))
    histories = split.histories("test")
    for user in range(split.n_users):
        masked = set(histories[user].tolist()) - {split.test_target[user]}
        kept = [i for i in range(tiny.n_items) if i not in masked][:10]
        target = split.test_target[user]
        assert (result.ranks[user] == kept.index(target)) if target in kept else result.per_user["HR@10"][user] == 0
