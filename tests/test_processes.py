"""The multi-process tests' bounded launcher kills the launcher's children on a timeout."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from tests.processes import run_bounded

# A launcher that starts a worker, says its pid, then waits for it.
LAUNCHER = ("import subprocess, sys; worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            " print(worker.pid, flush=True); worker.wait()")


def test_a_timeout_kills_the_worker_too() -> None:
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        run_bounded([sys.executable, "-c", LAUNCHER], env={}, timeout=3)
    worker = int(expired.value.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not ended(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ended(worker)


def ended(pid: int) -> bool:
    """Gone, or killed and waiting to be reaped (a container's first process may never reap it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_finished_command_returns_its_output_and_code() -> None:
    finished = run_bounded([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], env={}, timeout=30)
    assert (finished.returncode, finished.stdout) == (3, "out\n")
