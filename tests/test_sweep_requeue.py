"""A sweep's SLURM job is requeued when preempted and resumes to the uninterrupted result (bench/sweep_requeue.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.results import read_record
from bench.sweep import load_sweep, plan_sweep
from bench.sweep_executors import SubmititExecutor, run_sweep
from bench.sweep_requeue import warning_signal

# A small HSTU on demo: epochs of well under a second, each followed by a checkpoint; dropout and
# sampled negatives make the result depend on every random state the resume must restore.
HSTU_SWEEP = """
methods = ["hstu"]
datasets = ["demo"]
seeds = [1]
[set.hstu]
threads = 1
epochs = 20
eval_every = 0
max_history = 20
hidden_size = 16
num_layers = 1
num_heads = 1
attention_dim = 8
linear_dim = 8
negatives = 32
[slurm]
time_minutes = 30
cpus_per_job = 1
"""
TRAINED_EPOCH = re.compile(r"hstu epoch \d+/20: train loss")


def write_sweep(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(text))
    return path


def sweep_once(sweep: Path, cache: Path, results: Path, monkeypatch: pytest.MonkeyPatch):
    """Plan and run the sweep through submitit's local executor, with its own cache (the jobs inherit it)."""
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(cache))
    plan = plan_sweep(load_sweep(sweep), results)
    executor = SubmititExecutor(plan.spec.slurm, cache / "submitit", cluster="local", poll_seconds=0.2)
    return run_sweep(plan, executor, echo=lambda line: None)


def preempt_after_first_epoch(cache: Path, deadline: float) -> int:
    """What SLURM does to a preempted job (its --signal): the warning signal to the job's process,
    here once the run has checkpointed its first epoch. Returns that process's id."""
    while not list(cache.glob("work/hstu-demo-*/checkpoints/epoch-*")):
        assert time.monotonic() < deadline, "no checkpoint within the time allowed"
        time.sleep(0.05)
    (lock,) = cache.glob("work/hstu-demo-*/.run.lock")  # the run's holder: the job's process
    pid = json.loads(lock.read_text())["pid"]
    os.kill(pid, warning_signal())
    return pid


def test_a_preempted_job_is_requeued_and_its_record_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    sweep = write_sweep(tmp_path, HSTU_SWEEP)
    (whole,) = sweep_once(sweep, tmp_path / "cache-whole", tmp_path / "results-whole", monkeypatch)
    assert whole.status == "finished", whole.error

    cache, results = tmp_path / "cache", tmp_path / "results"
    outcomes: list = []
    sweeping = threading.Thread(target=lambda: outcomes.extend(sweep_once(sweep, cache, results, monkeypatch)))
    sweeping.start()
    try:
        preempted = preempt_after_first_epoch(cache, time.monotonic() + 300)
    finally:
        sweeping.join(timeout=600)
    (outcome,) = outcomes
    assert outcome.status == "finished", outcome.error
    job_log = "".join(path.read_text() for path in (cache / "submitit").rglob("*_log.*"))
    # submitit called the job's checkpoint() (its checkpointing interface) and requeued the job
    assert "this job is preempted" in job_log and "Calling checkpoint method." in job_log, job_log[-3000:]
    assert "Requeued job" in job_log
    assert f"the same command resumes (SIGUSR2, process {preempted})" in job_log
    (run_log,) = cache.glob("work/hstu-demo-*/run.log")  # both attempts write here
    stopped = re.search(r"stopped at epoch (\d+) of 20; the same command resumes", run_log.read_text())
    assert stopped and int(stopped[1]) < 20, run_log.read_text()[-3000:]
    assert len(TRAINED_EPOCH.findall(run_log.read_text())) == 20  # resumed: no epoch trained twice
    assert len(list(results.rglob("*.json"))) == 1  # the preempted attempt wrote no record
    record, expected = read_record(Path(outcome.record)), read_record(Path(whole.record))
    assert record["ranks"] == expected["ranks"]
    assert record["per_user"] == expected["per_user"]


def test_slurm_jobs_ask_for_requeue_and_the_warning_signal(tmp_path, monkeypatch):
    """The sbatch file submitit writes from the [slurm] table (a stand-in `srun` on PATH: submitit
    looks for it before it writes anything)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    spec = load_sweep(write_sweep(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\n'
                                            '[slurm]\nsignal_delay_s = 300\nmax_timeouts = 5\n'))
    executor = SubmititExecutor(spec.slurm, tmp_path / "submitit").submitit_executor()
    sbatch = executor._executor._make_submission_file_text("python -m job", "0")
    assert "#SBATCH --requeue\n" in sbatch and "#SBATCH --signal=USR2@300\n" in sbatch
    assert executor._executor.max_num_timeout == 5
    spec = load_sweep(write_sweep(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\n[slurm]\nrequeue = false\n'))
    sbatch = SubmititExecutor(spec.slurm, tmp_path / "submitit").submitit_executor()._executor \
        ._make_submission_file_text("python -m job", "0")
    assert "--requeue" not in sbatch


@pytest.mark.parametrize("table, fragment", [
    ("signal_delay_s = -1", "slurm option 'signal_delay_s' must be 0 or more, got -1"),
    ('requeue = "yes"', "'requeue' has the wrong type (str: 'yes')"),
])
def test_bad_requeue_options_are_refused_naming_the_file(tmp_path, table, fragment):
    with pytest.raises(BenchError, match=re.escape(f"sweep.toml: [slurm]: {fragment}")):
        load_sweep(write_sweep(tmp_path, f'methods = ["pop"]\ndatasets = ["demo"]\n[slurm]\n{table}\n'))


def test_a_warning_after_the_work_is_done_is_ignored():
    """A run that has finished is not requeued (it would run again and write a second record)."""
    from bench.sweep_requeue import RequeueableRun

    before = signal.getsignal(warning_signal())
    try:
        assert RequeueableRun(lambda value: value * 2)(21) == 42
        assert signal.getsignal(warning_signal()) == signal.SIG_IGN
    finally:
        signal.signal(warning_signal(), before)
