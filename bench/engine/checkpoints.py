"""The training loop's checkpoint folders: each written into a fresh folder that is renamed
into place only once complete, so a run killed at any moment finds its last complete epoch;
only the newest epoch and the best weights it names are kept. And the random generators'
states that a checkpoint holds, so a resumed run draws what an uninterrupted one would."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError

CHECKPOINT_PREFIX = "epoch-"
BEST_PREFIX = "best-epoch-"
STATE_FILE = "state.pt"
WEIGHTS_FILE = "weights.pt"


def rng_states() -> dict[str, Any]:
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng_states(states: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def _numbered(checkpoint_dir: Path, prefix: str) -> dict[int, Path]:
    """Complete folders ``<prefix><epoch>`` (a folder only gets its final name once complete)."""
    if not checkpoint_dir.is_dir():
        return {}
    return {int(path.name[len(prefix):]): path for path in checkpoint_dir.glob(f"{prefix}*")
            if path.is_dir() and path.name[len(prefix):].isdigit()}


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The last complete epoch checkpoint."""
    complete = {epoch: path for epoch, path in _numbered(Path(checkpoint_dir), CHECKPOINT_PREFIX).items()
                if (path / STATE_FILE).is_file()}
    return complete[max(complete)] if complete else None


def write_checkpoint_folder(checkpoint_dir: Path, name: str, file_name: str, payload: dict[str, Any]) -> None:
    """``payload`` into ``checkpoint_dir/name/file_name``, renamed into place once complete."""
    import torch

    final = checkpoint_dir / name
    temporary = checkpoint_dir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        with open(temporary / file_name, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:  # a full disk, a stop: no half-written folder stays behind
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)


def save_checkpoint(checkpoint_dir: Path, epoch: int, state: dict[str, Any]) -> None:
    write_checkpoint_folder(checkpoint_dir, f"{CHECKPOINT_PREFIX}{epoch:04d}", STATE_FILE, state)
    # Only the newest checkpoint and the best weights it names are needed to resume; older
    # ones would fill the disk (t5-small with its Adam moments is ~0.7 GB per epoch).
    keep = {f"{CHECKPOINT_PREFIX}{epoch:04d}"}
    if state["selection"]["best_epoch"] is not None:
        keep.add(f"{BEST_PREFIX}{state['selection']['best_epoch']:04d}")
    for path in checkpoint_dir.iterdir():
        if path.name not in keep and path.name.startswith((CHECKPOINT_PREFIX, BEST_PREFIX, ".tmp-")):
            shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        # Our own file; it holds RNG states (numpy arrays, tuples), hence not weights_only.
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise BenchError(f"{path}: cannot read checkpoint ({error}); delete the folder {path.parent.parent} to "
                         "train from scratch") from None
