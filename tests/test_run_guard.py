"""One run per work folder, and clean stops on SIGTERM (bench/run_guard.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.results import read_record
from bench.run_guard import RunStopped, checkpoint_writing, stop_on_signals, stop_run, work_folder_lock

ROOT = Path(__file__).resolve().parents[1]
TINY_T5 = {"epochs": 2, "d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16, "vocab_size": 200,
           "batch_size": 64, "beam_width": 10, "eval_every": 0}
RUNS = {  # demo-sized runs of a RecBole method and of an engine method
    "gru4rec": {"epochs": 2, "train_batch_size": 256, "hidden_size": 16, "embedding_size": 16},
    "p5-sid": TINY_T5,
}
# A line per trained epoch in run.log: RecBole's "epoch 0 training [...]", the engine's "epoch 1/2: train loss".
TRAINED_EPOCH = re.compile(r"epoch \d+ training \[|epoch \d+/\d+: train loss")


def run_arguments(method: str, results: Path, options: dict) -> list[str]:
    sets = [part for key, value in {**options, "threads": 1}.items() for part in ("--set", f"{key}={value}")]
    return [sys.executable, "-m", "bench.cli", "run", "--method", method, "--dataset", "demo", "--quiet", *sets,
            "--results-dir", str(results)]


def environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "GENREC_BENCH_CACHE": str(cache)}


def start(arguments: list[str], cache: Path) -> subprocess.Popen:
    return subprocess.Popen(arguments, env=environment(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def holder_of_lock(cache: Path, pid: int, deadline: float) -> Path:
    """The work folder whose lock ``pid`` holds, once it holds it."""
    while time.monotonic() < deadline:
        for lock in cache.glob("work/*/.run.lock"):
            try:
                if json.loads(lock.read_text() or "null")["pid"] == pid:
                    return lock.parent
            except (OSError, ValueError, TypeError):
                pass
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never took a work folder's lock")


def lines_until(process: subprocess.Popen, fragment: str, seen: list[str], deadline: float) -> None:
    """Read ``process``'s stderr (in a thread, into ``seen``) until a line holds ``fragment``."""
    def read() -> None:
        for line in process.stderr:
            seen.append(line)

    threading.Thread(target=read, daemon=True).start()
    while not any(fragment in line for line in seen):
        assert process.poll() is None or any(fragment in line for line in seen), "".join(seen)[-3000:]
        assert time.monotonic() < deadline, f"no line with {fragment!r} in time: {''.join(seen)[-3000:]}"
        time.sleep(0.05)


@pytest.mark.parametrize("method", sorted(RUNS))
def test_a_second_identical_run_waits_then_reuses_the_finished_model(method, tmp_path):
    """The first run holds the work folder (paused there, so the second surely finds it held); the
    second waits, names the holder, and once the first has finished it trains nothing."""
    cache, results = tmp_path / "cache", tmp_path / "results"
    arguments = run_arguments(method, results, RUNS[method])
    first = start(arguments, cache)
    deadline = time.monotonic() + 300
    work_dir = holder_of_lock(cache, first.pid, deadline)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = start(arguments, cache)
        refused = subprocess.run(arguments + ["--no-wait"], env=environment(cache), capture_output=True, text=True,
                                 timeout=300)
        seen: list[str] = []
        lines_until(second, "waiting for it to finish", seen, deadline)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    first_out, first_err = first.communicate(timeout=300)
    second_out, _ = second.communicate(timeout=300)
    assert first.returncode == 0, first_err[-3000:]
    assert second.returncode == 0, "".join(seen)[-3000:]
    # --no-wait: one line naming the holder, and nothing written
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert re.fullmatch(rf"error: work folder {work_dir.name} is in use by another run of this configuration "
                        rf"\(host \S+, pid {first.pid}, since \d{{4}}-\d\d-\d\dT[\d:]+\+00:00\); .*--no-wait.*", line)
    assert f"pid {first.pid}" in "".join(seen)
    # the second run names the first run's record and writes none of its own
    paths = [Path(out.strip().splitlines()[-1]).resolve() for out in (first_out, second_out)]
    assert paths[0] == paths[1]
    assert [path.resolve() for path in results.rglob("*.json")] == [paths[0]]
    trained = TRAINED_EPOCH.findall((work_dir / "run.log").read_text())
    assert len(trained) == RUNS[method]["epochs"]  # the second run trained no epoch


def test_the_lock_names_its_holder_and_is_released_when_the_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from bench.run_guard import work_folder_lock\n"
        "with work_folder_lock(Path(sys.argv[1]), True, print):\n    print('held', flush=True); time.sleep(60)"),
        str(tmp_path)], env=environment(tmp_path / "cache"), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(BenchError, match=rf"in use by another run of this configuration \(host \S+, pid {holder.pid}, "):
        with work_folder_lock(tmp_path, wait=False, say=print):
            pass
    holder.kill()  # SIGKILL: no clean-up runs, the system drops the lock
    holder.wait()
    said: list[str] = []
    with work_folder_lock(tmp_path, wait=True, say=said.append):
        assert json.loads((tmp_path / ".run.lock").read_text())["pid"] == os.getpid()
    assert said == []  # it did not have to wait


def test_a_stop_signal_waits_for_the_checkpoint_being_written():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        with pytest.raises(RunStopped) as stopped:
            with checkpoint_writing(3, 10):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)  # the handler ran during the write: it must not have raised yet
                written = True
        assert written
    assert stopped.value.message() == "stopped at epoch 3 of 10; the same command resumes"
    assert stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the handler the run found is back


def test_another_stop_signal_through_stop_run_also_waits_for_the_checkpoint():
    """A scheduler's warning signal (a sweep's SLURM job, bench/sweep_requeue.py) stops as SIGTERM does."""
    before = signal.getsignal(signal.SIGUSR2)
    signal.signal(signal.SIGUSR2, stop_run)
    try:
        with pytest.raises(RunStopped) as outside:
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.1)
        assert outside.value.epoch is None  # no guarded run: it stops at once
        with stop_on_signals(), pytest.raises(RunStopped) as stopped:
            with checkpoint_writing(2, 5):
                os.kill(os.getpid(), signal.SIGUSR2)
                time.sleep(0.1)
                written = True
        assert written and stopped.value.signal_number == signal.SIGUSR2
        assert stopped.value.message() == "stopped at epoch 2 of 5; the same command resumes"
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_sigterm_stops_a_sasrec_run_with_one_line_and_the_same_command_resumes_identically(tmp_path):
    """The issue's case: kill -TERM during a SASRec run on demo."""
    options = {"epochs": 6, "stopping_step": 6, "train_batch_size": 256, "hidden_size": 16, "inner_size": 32,
               "n_layers": 1}
    results = tmp_path / "results"
    arguments = run_arguments("sasrec", results, options)
    whole = subprocess.run(arguments, env=environment(tmp_path / "cache-whole"), capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    cache = tmp_path / "cache"
    running = start(arguments, cache)
    deadline = time.monotonic() + 300
    while not list(cache.glob("work/*/**/training-state.pth")):  # the state after its first epoch
        assert running.poll() is None, running.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no training state within 300 s"
        time.sleep(0.05)
    running.send_signal(signal.SIGTERM)
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"stopped at epoch \d of 6; the same command resumes", last), stderr[-3000:]
    (work_dir,) = cache.glob("work/sasrec-demo-*")
    assert not [path for path in work_dir.rglob("*") if path.name.startswith(".") and "tmp" in path.name]
    assert len(list(results.rglob("*.json"))) == 1  # the stopped run wrote no record
    assert last in (work_dir / "run.log").read_text()
    resumed = subprocess.run(arguments, env=environment(cache), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = read_record(Path(resumed.stdout.strip().splitlines()[-1]))
    expected = read_record(Path(whole.stdout.strip().splitlines()[-1]))
    assert record["method_metadata"]["resumed_after_epoch"] >= 0  # RecBole counts epochs from 0
    assert record["per_user"] == expected["per_user"]
