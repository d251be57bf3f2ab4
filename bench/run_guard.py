"""What guards one run's work folder: one run at a time, and a clean stop on SIGTERM or SIGINT.

**The lock.** Each process of a run holds an operating-system lock (``fcntl.flock``) on a file in
the work folder (``.run.lock``, ``.run-process<i>.lock`` for process i of several), so the system
releases it when the holder ends, however it ends (``kill -9`` included). A second run of the
same configuration waits for the first and then finds its finished model; with ``wait=False``
it stops at once with one line naming the holder (host, process id, since when), which the
holder writes into the lock file.

**The stop.** While a run is guarded, SIGTERM and SIGINT raise :class:`RunStopped` in the
process, abandoning the current step; a checkpoint being written is finished first
(training loops write theirs under :func:`checkpoint_writing`), so the last checkpoint is whole. The runner then says
:meth:`RunStopped.message` ("stopped at epoch N of M; the same command resumes") and the CLI
exits with ``128 + signal`` (143 for SIGTERM, 130 for SIGINT), as a shell reports a process
ended by that signal. :func:`stop_run` is the same stop as a handler for other signals (a SLURM
job's warning before preemption or its time limit, :mod:`bench.sweep_requeue`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from bench.errors import BenchError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def lock_file(work_dir: Path, process_index: int = 0, processes: int = 1) -> Path:
    return work_dir / (".run.lock" if processes == 1 else f".run-process{process_index}.lock")


def _holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it (it writes right after locking: retry briefly)."""
    for _ in range(20):
        try:
            found = json.loads(path.read_text() or "null")
        except (OSError, json.JSONDecodeError):
            found = None
        if found:
            return f"host {found['host']}, pid {found['pid']}, since {found['since']}"
        time.sleep(0.05)
    return "a process that has not said who it is"


@contextlib.contextmanager
def work_folder_lock(work_dir: Path, wait: bool, say: Callable[[str], None], process_index: int = 0,
                     processes: int = 1) -> Iterator[float | None]:
    """Hold the work folder's lock for this process of the run while the block runs; the block
    gets the time (``time.time()``) at which this run started waiting for another, or None when
    the lock was free."""
    path = lock_file(work_dir, process_index, processes)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited_since = None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited_since = time.time()
            holder = _holder(path)
            if not wait:
                raise BenchError(f"work folder {work_dir.name} is in use by another run of this configuration "
                                 f"({holder}); run again when it has finished, or without --no-wait to wait")
            # a warning, so that a quiet run says why it seems to hang
            say(f"warning: work folder {work_dir.name} is in use by another run of this configuration ({holder}); "
                "waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": since}).encode(), 0)
        yield waited_since
    finally:
        os.close(handle)  # closing releases the lock; the file stays for the next run


class RunStopped(BaseException):
    """A stop signal arrived (a BaseException, as KeyboardInterrupt is: nothing that catches
    ``Exception`` swallows it)."""

    def __init__(self, signal_number: int, epoch: int | None, epochs: int | None) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number, self.epoch, self.epochs = signal_number, epoch, epochs

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number

    def message(self) -> str:
        if self.epoch is None:
            return (f"stopped by {signal.Signals(self.signal_number).name} before the first checkpoint; "
                    "the same command starts the run again")
        return f"stopped at epoch {self.epoch} of {self.epochs}; the same command resumes"


class _StopGuard:
    """The signal handlers of one guarded run, and what it has checkpointed so far."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.epochs: int | None = None
        self.pending: int | None = None
        self.writing = 0

    def handle(self, signal_number: int, frame: object) -> None:
        if self.writing:
            self.pending = signal_number  # the checkpoint being written is finished first
            return
        raise RunStopped(signal_number, self.epoch, self.epochs)


_active: _StopGuard | None = None  # signal handlers are per process, so is the guard that installs them


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT raise :class:`RunStopped` (previous handlers
    restored after). Only the main thread can install handlers; elsewhere nothing changes."""
    global _active
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    guard, previous_guard = _StopGuard(), _active
    previous = {number: signal.signal(number, guard.handle) for number in STOP_SIGNALS}
    _active = guard
    try:
        yield
    finally:
        _active = previous_guard
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_run(signal_number: int, frame: object = None) -> None:
    """A signal handler that stops the guarded run as SIGTERM does (the checkpoint being written is
    finished first), for other signals that mean "stop now": a scheduler's warning before a job
    is preempted or reaches its time limit. Outside a guarded run it stops at once."""
    if _active is None:
        raise RunStopped(signal_number, None, None)
    _active.handle(signal_number, frame)


@contextlib.contextmanager
def checkpoint_writing(epoch: int, epochs: int) -> Iterator[None]:
    """The checkpoint after ``epoch`` of ``epochs`` (1-based) is being written: a stop signal waits
    until it is whole, and a stop after it resumes from it."""
    guard = _active
    if guard is None:
        yield
        return
    guard.writing += 1
    try:
        yield
        guard.epoch, guard.epochs = epoch, epochs
    finally:
        guard.writing -= 1
    if guard.writing == 0 and guard.pending is not None:
        raise RunStopped(guard.pending, guard.epoch, guard.epochs)
