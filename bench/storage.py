"""Atomic file writes (a reader sees either the whole new file or the old state, never a part)
and a folder lock for caches that several runs share."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterator

from bench.errors import BenchError


def atomic_write_bytes(path: Path, payload: bytes, durable: bool = True) -> None:
    """Write ``path`` whole or not at all; a folder that cannot be written (read-only, full disk)
    is a one-line error naming it, and leaves nothing behind. ``durable``: flush the file to the
    disk before it takes its name (a record, a checkpoint), so that a power loss cannot leave an
    empty file under it; a file rebuilt from the store at will (a report's pages) may skip that."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise BenchError(f"{path.parent}: cannot write in this folder ({error.strerror})") from None
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # as open() would create it: mkstemp makes it private
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise BenchError(f"{path}: cannot be written ({error.strerror}); nothing was written") from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (created if needed): runs that share a cache
    folder (IDGenRec's start, SETRec's CF tokenizer, UniSRec's pre-training) fill it one at a time."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
