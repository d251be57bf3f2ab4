"""Repeat targets (the item is already in the user's training + validation history) and novel
ones split the evaluated users exactly, and the record carries both blocks only when some
target repeats."""

from __future__ import annotations

import numpy as np

from bench.config import EvalConfig
from bench.data.dataset import build_dataset
from bench.data.split import leave_one_out
from bench.evaluation.protocol import evaluate
from bench.method import RunContext, TrainingData
from bench.registry import methods
from bench.runner import repeat_novel_fields
from tests.conftest import tiny_dataset

# Leave-one-out: the last item is the test target, the one before it the validation target.
SEQUENCES = [
    ("repeats a training item", ["a", "b", "c", "a"]),
    ("novel", ["a", "b", "c", "d"]),
    ("repeats a training item, not the last", ["b", "c", "d", "c"]),
    ("novel after a repeat inside the history", ["c", "c", "d", "e"]),
    ("repeats its validation item", ["d", "e", "f", "f"]),
    ("novel, last", ["e", "f", "a", "b"]),
]
REPEAT_USERS = [0, 2, 4]
NOVEL_USERS = [1, 3, 5]


def run_recent(dataset, tmp_path):
    split = leave_one_out(dataset)
    context = RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)
    method_class = methods().get("recent")
    method = method_class(method_class.config_class(), context)
    method.fit(TrainingData(dataset=dataset, split=split))
    return evaluate(method, split, "test", EvalConfig(), context, in_group=True)


def test_repeat_and_novel_targets_split_the_users_exactly(tmp_path) -> None:
    dataset = build_dataset("repeats", SEQUENCES, {}, {}, {"format": "test"})
    result = run_recent(dataset, tmp_path)
    assert result.repeat_targets.tolist() == [user in REPEAT_USERS for user in range(len(SEQUENCES))]
    assert result.repeat.users.tolist() == REPEAT_USERS and result.novel.users.tolist() == NOVEL_USERS
    for subset in (result.repeat, result.novel):
        for name, values in subset.per_user.items():
            assert np.array_equal(values, result.per_user[name][subset.users])
    # The repeat baseline puts each repeat target among the user's (at most three) history items.
    assert result.repeat.per_user["HR@5"].tolist() == [1.0, 1.0, 1.0]
    fields = repeat_novel_fields(result)
    assert fields["repeat_novel"] == {"repeat_targets": 3, "repeat_users": 3, "novel_targets": 3,
                                      "novel_users": 3, "repeat_share": 0.5}
    assert fields["metrics_repeat"]["HR@5"] == 1.0 and set(fields["metrics_novel"]) == set(result.per_user)
    # The record keeps the partition as one flag per target of its ranks; reading it back gives
    # each side's users and per-user values.
    from bench.evaluation.stored_ranks import per_user_fields, ranks_block

    derived = per_user_fields(ranks_block(result))
    assert derived["users_repeat"] == REPEAT_USERS and derived["users_novel"] == NOVEL_USERS
    for side, subset in (("repeat", result.repeat), ("novel", result.novel)):
        assert derived[f"per_user_{side}"] == {name: np.round(values, 6).tolist()
                                               for name, values in subset.per_user.items()}


def test_a_split_without_repeat_targets_reports_neither_block(tmp_path) -> None:
    result = run_recent(tiny_dataset(n_users=12, n_items=20), tmp_path)  # users walk forward: no repeats
    assert not result.repeat_targets.any()
    assert result.repeat is None and result.novel is None
    assert repeat_novel_fields(result) == {}


def test_the_standard_table_prints_the_repeat_share_beside_its_rows(tmp_path) -> None:
    from bench.results import write_record
    from bench.tables import render_table
    from tests.test_report import fixture_record

    counts = {"repeat_targets": 3, "repeat_users": 3, "novel_targets": 9, "novel_users": 9, "repeat_share": 0.25}
    write_record(tmp_path, fixture_record("recent", 42, 0.3, 1) | {"dataset": "yelp", "repeat_novel": counts})
    write_record(tmp_path, fixture_record("pop", 42, 0.1, 2) | {"dataset": "toys"})
    text = render_table("standard", tmp_path)
    assert any("Pop" in line and "Recent" in line and "FPMC" in line for line in text.splitlines())
    assert "Repeat targets (the item is already in the user's history, which is not masked" in text
    assert "Yelp 3 of 12 (25.0%)." in text and "Toys 0 of" not in text


def test_bench_table_shows_one_block_of_targets(tmp_path) -> None:
    """--targets repeat|novel: each cell is the record's block of that name, with no paper beside it."""
    from bench.results import write_record
    from bench.tables import render_table
    from tests.test_report import fixture_record

    record = fixture_record("recent", 42, 0.3, 1) | {"dataset": "yelp"}
    record |= {"metrics_repeat": {"HR@5": 0.75, "NDCG@5": 0.5, "HR@10": 0.875, "NDCG@10": 0.625},
               "metrics_novel": {"HR@5": 0.0125, "NDCG@5": 0.0063, "HR@10": 0.025, "NDCG@10": 0.0094}}
    write_record(tmp_path, record)
    repeat = render_table("standard", tmp_path, targets="repeat", with_paper=True)
    novel = render_table("standard", tmp_path, targets="novel")
    assert "(repeat targets only)" in repeat and "(novel targets only)" in novel
    assert any("Repeat HR@10" in line and "0.8750** (-)" in line for line in repeat.splitlines())
    assert any("Novel NDCG@5" in line and "0.0063" in line for line in novel.splitlines())
    assert "0.8750" not in novel
