"""What IDGenRec's schedule carries from phase to phase: the current IDs, how Algorithm 1 made
them, the log of the phases and the best phase so far; and its form in a snapshot (a dict of
plain values, so a snapshot written before this class existed still loads)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bench.errors import BenchError

# Kept by snapshots written before this class: the initial IDs' statistics, which the start
# folder holds (``initial-ids.json``); read and dropped.
OBSOLETE_KEYS = frozenset({"initial_item_stats"})


@dataclasses.dataclass
class ScheduleState:
    item_ids: list[str]  # the current ID of every item of the corpus
    user_ids: list[str] | None = None  # of every user (training prompts), when prompts carry user IDs
    item_stats: dict[str, Any] | None = None  # Algorithm 1's counts for the item IDs of the last generator phase
    user_stats: dict[str, Any] | None = None  # and for the current user IDs
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one entry per finished phase
    selected_phase: int | None = None  # the phase of best validation NDCG@10 so far
    selected_value: float | None = None  # its NDCG@10
    selection: dict[str, Any] | None = None  # how the last recommender phase validated

    def to_snapshot(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_snapshot(cls, saved: Any, path: Path) -> "ScheduleState":
        """The state a snapshot at ``path`` holds; one written by earlier versions (a dict
        without the keys still unset when it was written) loads too."""
        names = {field.name for field in dataclasses.fields(cls)}
        if not isinstance(saved, dict) or "item_ids" not in saved:
            raise BenchError(f"{path}: not an IDGenRec schedule snapshot (no item IDs in its state); "
                             "delete it to train from scratch")
        unknown = sorted(set(saved) - names - OBSOLETE_KEYS)
        if unknown:
            raise BenchError(f"{path}: unknown entries {', '.join(map(str, unknown))} in the schedule's state; "
                             "delete it to train from scratch")
        return cls(**{name: value for name, value in saved.items() if name in names})
