"""What IDGenRec keeps on disk: the schedule's snapshot after each phase (recommender, generator
and the schedule's state, :class:`~methods.idgenrec.state.ScheduleState`: a killed run resumes
at a phase boundary), the snapshot of the best phase, and the table of every item's initial
and final ID (``bench ids show``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from bench.data.dataset import Dataset
from bench.errors import BenchError
from bench.shared_artifacts import atomic_save
from bench.storage import atomic_write_text
from methods.idgenrec.state import ScheduleState

SNAPSHOT_FILE = "snapshot.pt"
BEST_SNAPSHOT_FILE = "best-snapshot.pt"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    recommender: dict[str, Any]  # state dicts of the two models
    generator: dict[str, Any]
    state: ScheduleState
    phases_done: int


def read_snapshot(path: Path) -> Snapshot:
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise BenchError(f"{path}: cannot read ({error}); delete it to train from scratch") from None
    missing = [key for key in ("recommender", "generator", "state", "phases_done")
               if not isinstance(saved, dict) or key not in saved]
    if missing:
        raise BenchError(f"{path}: not an IDGenRec schedule snapshot (no {', '.join(missing)}); "
                         "delete it to train from scratch")
    return Snapshot(saved["recommender"], saved["generator"], ScheduleState.from_snapshot(saved["state"], path),
                    saved["phases_done"])


def save_snapshot(snapshot: Snapshot, paths: Sequence[Path]) -> None:
    import torch

    saved = {"recommender": snapshot.recommender, "generator": snapshot.generator,
             "state": snapshot.state.to_snapshot(), "phases_done": snapshot.phases_done}
    for path in paths:
        atomic_save(path, lambda stream: torch.save(saved, stream))


def write_ids_table(path: Path, dataset: Dataset, initial_ids: Sequence[str], final_ids: Sequence[str]) -> Path:
    lines = ["item\tinitial_id\tfinal_id\ttext"]
    for item, (name, text) in enumerate(zip(dataset.item_ids, dataset.item_text)):
        cells = [name, initial_ids[item], final_ids[item], " ".join(text.split())]
        lines.append("\t".join(cell.replace("\t", " ") for cell in cells))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
