"""The shared-artifact helper: key, lock, main process first, atomic save; in one process here and
in 2 real processes (torchrun, gloo)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.runtime import runtime_for
from bench.shared_artifacts import atomic_save, shared_artifact
from tests.processes import run_bounded

ROOT = Path(__file__).resolve().parents[1]


def test_computed_once_then_read(tmp_path: Path) -> None:
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(3.0)

    def made():
        return shared_artifact(tmp_path / "cache" / "a.npy", runtime_for("cpu", "fp32"), compute,
                               lambda value, stream: np.save(stream, value), np.load)

    first, second = made(), made()
    assert (first.reused, second.reused) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(second.value, np.arange(3.0))


def test_a_failed_save_leaves_no_artifact(tmp_path: Path) -> None:
    def write(value, stream) -> None:
        stream.write(b"part")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        shared_artifact(tmp_path / "a.bin", runtime_for("cpu", "fp32"), lambda: 1, write, Path.read_bytes)
    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_save(tmp_path / "b.bin", lambda stream: write(None, stream))
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "b.bin").exists()


def test_two_processes_compute_once_or_together_and_hold_the_main_ones(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "shared_artifact_worker.py"), str(tmp_path)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    finished = run_bounded(command, environment, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    got = [json.loads((tmp_path / f"got-{rank}.json").read_text()) for rank in (0, 1)]
    computed = sorted(path.name for path in tmp_path.glob("computed-*"))
    # Alone: the main process computed it, the other read it after the barrier.
    assert [part["alone"] for part in got] == [{"value": [0, 7], "reused": False}, {"value": [0, 7], "reused": True}]
    # Together: both computed (each its own value), and both hold the main one's, as saved.
    assert computed == ["computed-alone-by-0", "computed-together-by-0", "computed-together-by-1"]
    assert [part["together"]["value"] for part in got] == [[0, 7], [0, 7]]
    assert json.loads((tmp_path / "cache" / "together.json").read_text()) == [0, 7]
