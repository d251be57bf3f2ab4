"""Split protocols: temporal window boundaries, no leakage from later windows, the ID-order check."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from bench.data.dataset import build_dataset
from bench.data.prepare import dataset_messages, order_notice, prepare_dataset
from bench.data.split import leave_one_out, make_split
from bench.errors import BenchError
from bench.method import RunContext, TrainingData
from tests.conftest import tiny_dataset


def timed_dataset():
    """20 interactions at times 1..20, dealt to users so that every window cuts through users."""
    sequences = [("u1", ["a", "b", "c", "d", "e"]), ("u2", ["b", "c", "d", "f"]), ("u3", ["a", "c", "g"]),
                 ("u4", ["a", "b", "c", "d", "e", "f", "h", "i"])]
    times = [[1, 3, 5, 17, 19], [2, 4, 6, 18], [7, 8, 20], [9, 10, 11, 12, 13, 14, 15, 16]]
    return build_dataset("t", sequences, {}, {}, {"format": "test"}, timestamps=times)


def names(dataset, arrays):
    return [[dataset.item_ids[i] for i in a] for a in arrays]


def test_temporal_windows_cut_the_time_ordered_interactions_8_1_1():
    dataset, split = make_split(timed_dataset(), "temporal")
    # Times 1..16 train, 17..18 validation, 19..20 test.
    assert names(dataset, split.train) == [["a", "b", "c"], ["b", "c", "d"], ["a", "c"],
                                           ["a", "b", "c", "d", "e", "f", "h", "i"]]
    assert names(dataset, split.target_lists("valid")) == [["d"], ["f"], [], []]
    assert names(dataset, split.target_lists("test")) == [["e"], [], ["g"], []]
    assert split.facts["valid_window_starts_at"] == 17 and split.facts["test_window_starts_at"] == 19
    assert split.phase_users("valid").tolist() == [0, 1] and split.phase_users("test").tolist() == [0, 2]
    # The history of a phase is everything before its window.
    assert names(dataset, split.histories("test"))[0] == ["a", "b", "c", "d"]
    assert names(dataset, split.histories("valid")) == names(dataset, split.train)
    assert split.protocol == "temporal" and not split.single_target
    with pytest.raises(BenchError, match="several valid targets per user"):
        split.valid_target  # noqa: B018


def test_users_without_a_training_interaction_are_left_out_and_counted():
    early = [f"i{n}" for n in range(10)]
    dataset = build_dataset("t", [("u1", early), ("late", ["i0", "i1", "i2"])], {}, {}, {},
                            timestamps=[list(range(10)), [100, 101, 102]])
    restricted, split = make_split(dataset, "temporal")  # 13 interactions: u1's 10 are the training window
    assert restricted.user_ids == ["u1"] and split.n_users == 1
    assert split.facts["users_without_training_interactions"] == 1


def test_temporal_needs_timestamps(tiny):
    with pytest.raises(BenchError, match="dataset 'tiny' has no timestamps; eval.protocol=temporal needs them"):
        make_split(tiny, "temporal")
    with pytest.raises(BenchError, match="not a published split"):
        make_split(tiny, "files")
    assert make_split(tiny)[1].protocol == "leave-one-out"


def test_no_training_example_or_id_comes_from_a_later_window(tmp_path):
    from methods.pop import Popularity, PopularityConfig
    from methods.recbole_atomic import write_atomic_files

    dataset, split = make_split(prepare_dataset("demo"), "temporal")
    start = split.facts["valid_window_starts_at"]
    for user in range(split.n_users):
        times = dataset.timestamps[user]
        assert (times[:len(split.train[user])] <= start).all()
        later = set(dataset.sequences[user][len(split.train[user]):].tolist())
        # the training part is a prefix; everything after it lies in a later window
        assert np.array_equal(dataset.sequences[user][:len(split.train[user])], split.train[user])
        assert set(split.target_lists("valid")[user].tolist()) | set(split.target_lists("test")[user].tolist()) == later
    # Popularity counts the training window only.
    pop = Popularity(PopularityConfig(), RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False))
    pop.fit(TrainingData(dataset=dataset, split=split))
    assert pop.counts.sum() == sum(len(t) for t in split.train)
    cold = ~split.warm_items()
    assert cold.any() and (pop.counts[cold] == 0).all()
    # RecBole is handed the training window plus, per user, the first validation target only.
    write_atomic_files(dataset, split, tmp_path / "recbole", with_categories=False)
    rows = [line.split("\t") for line in (tmp_path / "recbole" / "bench.inter").read_text().splitlines()[1:]]
    written: dict[int, list[int]] = {}
    for user, item, _ in rows:
        written.setdefault(int(user), []).append(int(item))
    for user in range(split.n_users):
        valid = split.target_lists("valid")[user][:1].tolist() if len(split.train[user]) >= 2 else []
        assert written.get(user, []) == split.train[user].tolist() + valid


def test_leave_one_out_is_unchanged():
    dataset = tiny_dataset()
    split = leave_one_out(dataset)
    assert split.valid_target.tolist() == [s[-2] for s in dataset.sequences]
    assert split.test_target.tolist() == [s[-1] for s in dataset.sequences]
    assert [h.tolist() for h in split.histories("test")] == [s[:-1].tolist() for s in dataset.sequences]
    # The digest formula of records written before the other protocols existed.
    old = hashlib.sha256()
    old.update(np.asarray([s[-2] for s in dataset.sequences], dtype=np.int64).tobytes())
    old.update(np.asarray([s[-1] for s in dataset.sequences], dtype=np.int64).tobytes())
    old.update(np.asarray([len(s) - 2 for s in dataset.sequences], dtype=np.int64).tobytes())
    assert split.digest() == old.hexdigest()[:16]


def test_id_sorted_sequences_warn_and_a_declared_order_notes():
    sorted_dataset = build_dataset("s", [("u1", ["a", "b", "c"]), ("u2", ["b", "c", "d"]), ("u3", ["d", "a", "b"])],
                                   {}, {}, {"sequence_file": "x/user_sequence.txt"})
    kind, text = order_notice(sorted_dataset)
    assert kind == "warning" and text.startswith("x/user_sequence.txt: 66.7% of user sequences (2 of 3)")
    assert "leave-one-out will then test each user's highest-ID item" in text
    declared = dataclasses.replace(sorted_dataset, metadata={**sorted_dataset.metadata,
                                                             "declared_order": "ascending-item-id"})
    assert order_notice(declared)[0] == "note" and dataset_messages(declared)[0].startswith("note: ")
    timed = build_dataset("t", [("u1", ["c", "b", "a"]), ("u2", ["b", "c", "d"]), ("u3", ["d", "a", "b"])],
                          {}, {}, {})
    assert order_notice(timed) is None and dataset_messages(timed) == []
