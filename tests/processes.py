"""Launcher subprocesses of the multi-process tests, bounded in time.

``subprocess.run(..., timeout=...)`` kills only the process it started: a torch launcher killed
that way leaves its workers running (and holding a core) after the test has failed. Here the
launcher starts a process group of its own, and a timeout kills the whole group."""

from __future__ import annotations

import os
import signal
import subprocess


def run_bounded(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)``,
    except that a timeout kills the launcher's workers too before it raises."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
