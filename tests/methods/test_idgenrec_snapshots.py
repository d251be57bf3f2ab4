"""IDGenRec's schedule state and its snapshots: the typed state round-trips, a snapshot written
before the state was typed (a plain dict) still loads, and a file that is no snapshot is one
line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from methods.idgenrec.snapshots import Snapshot, read_snapshot, save_snapshot
from methods.idgenrec.state import ScheduleState

WEIGHTS = {"weight": torch.arange(3.0)}


def test_state_round_trips_through_a_snapshot(tmp_path: Path) -> None:
    state = ScheduleState(item_ids=["red car", "blue boat"], user_ids=["toy fan"], item_stats={"n_items": 2},
                          user_stats={"n_items": 1}, log=[{"phase": 0, "kind": "recommender", "best_validation": 0.3}],
                          selected_phase=0, selected_value=0.3, selection={"metric": "NDCG@10"})
    save_snapshot(Snapshot(WEIGHTS, WEIGHTS, state, phases_done=1), [tmp_path / "a.pt", tmp_path / "b.pt"])
    for name in ("a.pt", "b.pt"):
        loaded = read_snapshot(tmp_path / name)
        assert loaded.state == state and loaded.phases_done == 1
        assert torch.equal(loaded.recommender["weight"], WEIGHTS["weight"])
    # The file holds plain values, not the class: it loads without this module.
    assert torch.load(tmp_path / "a.pt", weights_only=False)["state"] == state.to_snapshot()


def test_a_snapshot_written_as_a_dict_before_the_state_was_typed_loads(tmp_path: Path) -> None:
    """What a run killed after its first phase left behind: the keys set by then, and the
    initial IDs' statistics, which the start folder holds (dropped)."""
    old = {"item_ids": ["red car", "blue boat"], "user_ids": ["toy fan"], "log": [{"phase": 0, "kind": "generator"}],
           "initial_item_stats": {"n_items": 2}, "user_stats": {"n_items": 1}, "item_stats": {"n_items": 2}}
    torch.save({"recommender": WEIGHTS, "generator": WEIGHTS, "state": old, "phases_done": 1}, tmp_path / "old.pt")
    loaded = read_snapshot(tmp_path / "old.pt")
    assert loaded.state == ScheduleState(item_ids=old["item_ids"], user_ids=old["user_ids"], log=old["log"],
                                         item_stats={"n_items": 2}, user_stats={"n_items": 1})
    assert loaded.state.selected_phase is None and loaded.phases_done == 1


@pytest.mark.parametrize("saved", [
    {"recommender": WEIGHTS, "generator": WEIGHTS, "state": {"log": []}, "phases_done": 1},
    {"recommender": WEIGHTS, "generator": WEIGHTS, "state": {"item_ids": [], "colour": 1}, "phases_done": 1},
    {"recommender": WEIGHTS, "state": {"item_ids": []}},
    [1, 2, 3],
])
def test_a_file_that_is_no_schedule_snapshot_is_one_line_naming_it(tmp_path: Path, saved) -> None:
    path = tmp_path / "snapshot.pt"
    torch.save(saved, path)
    with pytest.raises(BenchError) as error:
        read_snapshot(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)
