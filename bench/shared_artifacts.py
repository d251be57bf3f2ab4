"""Artifacts computed once and read by everyone else: by later runs (a cache keyed by what it is
made from) and by the other processes of a run.

One helper owns the whole pattern, so every cached artifact (text embeddings, TIGER's and
RPG's semantic IDs, SETRec's CF tokenizer, UniSRec's pre-training) is made the same way:

- **the key**: :func:`bench.identity.identity_digest`, 16 hex digits of SHA-256 over canonical JSON;
- **the lock**: runs that share the artifact's folder make it one at a time (``storage.locked``),
  and a run that waited reads what the first one made;
- **main process first**: in a run of several processes the main one makes the artifact and
  the others read it after the barrier; or, for a computation every process takes part in (a
  data-parallel training), all compute, the main one saves, and after the barrier the others
  read the main one's, so that every process holds the same artifact;
- **the atomic save**: :func:`atomic_save` writes through memory into ``storage.atomic_write_bytes``,
  so a reader sees the whole artifact or none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Generic, TypeVar

from bench.storage import atomic_write_bytes, locked

if TYPE_CHECKING:
    from bench.runtime import Runtime

T = TypeVar("T")


def atomic_save(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` (``np.save``, ``torch.save``, ...) into ``path``, whole or not at all."""
    buffer = io.BytesIO()
    write(buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


@dataclasses.dataclass(frozen=True)
class Shared(Generic[T]):
    value: T
    # Read from a file an earlier run (or, in this run, the main process) had made.
    reused: bool


def shared_artifact(path: Path, runtime: "Runtime", compute: Callable[[], T], write: Callable[[T, BinaryIO], None],
                    read: Callable[[Path], T], every_process_computes: bool = False) -> Shared[T]:
    """The artifact at ``path``: read when it is there, else computed and saved there.

    ``compute()`` makes it, ``write(value, stream)`` serialises it, ``read(path)`` loads it.
    With several processes the main one goes first (above); ``every_process_computes`` for a
    ``compute`` that is itself collective (every process must call it, or it waits forever)."""
    path = Path(path)
    if every_process_computes and runtime.num_processes > 1:
        return _computed_together(path, runtime, compute, write, read)
    if not runtime.is_main_process:
        # The main process has made or found it (whole, by the atomic save) before the barrier.
        # No lock here: the main process may already hold this folder's lock for the next
        # artifact, inside a collective that waits for this process.
        runtime.barrier()
        return Shared(read(path), reused=True)
    try:
        with locked(path.parent):
            if path.is_file():
                return Shared(read(path), reused=True)
            value = compute()
            atomic_save(path, lambda stream: write(value, stream))
            return Shared(value, reused=False)
    finally:
        if runtime.num_processes > 1:
            runtime.barrier()


def _computed_together(path: Path, runtime: "Runtime", compute: Callable[[], T],
                       write: Callable[[T, BinaryIO], None], read: Callable[[Path], T]) -> Shared[T]:
    # Only the main process holds the lock: the others must not wait on it while the main one
    # waits for them inside the collective computation.
    with locked(path.parent) if runtime.is_main_process else contextlib.nullcontext():
        if runtime.broadcast(path.is_file() if runtime.is_main_process else None):
            return Shared(read(path), reused=True)
        value = compute()
        if runtime.is_main_process:
            atomic_save(path, lambda stream: write(value, stream))
        runtime.barrier()
    return Shared(value if runtime.is_main_process else read(path), reused=False)
