"""What IDGenRec keeps on disk: the schedule's snapshot after each phase (recommender, generator,
IDs and log: a killed run resumes at a phase boundary), the snapshot of the best phase, and
the table of every item's initial and final ID (``bench ids show``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bench.data.dataset import Dataset
from bench.errors import BenchError
from bench.shared_artifacts import atomic_save
from bench.storage import atomic_write_text

SNAPSHOT_FILE = "snapshot.pt"
BEST_SNAPSHOT_FILE = "best-snapshot.pt"


def read_snapshot(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise BenchError(f"{path}: cannot read ({error}); delete it to train from scratch") from None


def save_snapshot(snapshot: dict[str, Any], paths: Sequence[Path]) -> None:
    import torch

    for path in paths:
        atomic_save(path, lambda stream: torch.save(snapshot, stream))


def write_ids_table(path: Path, dataset: Dataset, initial_ids: Sequence[str], final_ids: Sequence[str]) -> Path:
    lines = ["item\tinitial_id\tfinal_id\ttext"]
    for item, (name, text) in enumerate(zip(dataset.item_ids, dataset.item_text)):
        cells = [name, initial_ids[item], final_ids[item], " ".join(text.split())]
        lines.append("\t".join(cell.replace("\t", " ") for cell in cells))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
