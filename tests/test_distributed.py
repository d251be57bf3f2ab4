"""Several processes for real: torchrun on 2 CPU processes (gloo), as a GPU cluster would run them.

- evaluation sharded over 2 processes gives per-user arrays identical to 1 process, with
  each user ranked by exactly one process;
- a 2-process `bench run` killed mid-training resumes with 2 processes, refuses another
  process count, and ends with the record of a run that was never killed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from bench.config import EvalConfig, resolve
from bench.data.split import leave_one_out
from bench.evaluation.protocol import evaluate
from bench.method import RunContext, TrainingData
from bench.registry import methods
from bench.results import read_record
from tests.conftest import tiny_dataset, with_cold_targets
from tests.processes import run_bounded

ROOT = Path(__file__).resolve().parents[1]
TINY_T5 = {"epochs": 1, "d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16, "vocab_size": 200,
           "batch_size": 16, "threads": 1, "beam_width": 10, "eval_every": 0, "device": "cpu"}


def environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "GENREC_BENCH_CACHE": str(cache)}


def test_two_process_evaluation_matches_one_process(tmp_path: Path) -> None:
    n_users, n_items, batch_size = 30, 20, 4  # 8 batches, the last one short: 4 per process
    method_class = methods().get("p5-sid")
    fields = {field.name for field in dataclasses.fields(method_class.config_class)}
    overrides = {key: value for key, value in TINY_T5.items() if key in fields}
    resolved = resolve("p5-sid", method_class.config_class, method_class.profiles, "cpu", {}, overrides)
    split = leave_one_out(tiny_dataset(n_users=n_users, n_items=n_items))
    context = RunContext(work_dir=tmp_path / "work", seed=0, profile="cpu", show_progress=False)
    context.work_dir.mkdir()
    method = method_class(resolved.method, context)
    method.fit(TrainingData(dataset=tiny_dataset(n_users=n_users, n_items=n_items), split=split))
    one_process = evaluate(method, split, "test", EvalConfig(batch_size=batch_size), context)
    grouped = evaluate(method, with_cold_targets(split), "test", EvalConfig(batch_size=batch_size), context,
                       in_group=True)
    torch.save(method, tmp_path / "method.pt")

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "distributed_worker.py"), str(tmp_path / "method.pt"), str(tmp_path),
               str(n_users), str(n_items), str(batch_size)]
    finished = run_bounded(command, environment(tmp_path / "cache"), timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    ranked = [json.loads((tmp_path / f"ranked-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(part["processes"] == 2 for part in ranked)
    # Contiguous blocks of whole batches, every user ranked once, by one process.
    assert ranked[0]["users"] == list(range(16)) and ranked[1]["users"] == list(range(16, n_users))
    gathered = np.load(tmp_path / "result.npz")
    np.testing.assert_array_equal(gathered["ranks"], one_process.ranks)
    for name, values in one_process.per_user.items():
        np.testing.assert_array_equal(gathered[name], values)
    for group, result in (("warm", grouped.warm_in_group), ("cold", grouped.cold_in_group)):
        for name, values in result.per_user.items():
            np.testing.assert_array_equal(gathered[f"{group}-{name}"], values)
    assert grouped.cold_in_group.users.tolist() == list(range(n_users))  # every user has the cold target
    assert one_process.per_user["HR@10"].mean() > 0  # a trained model, not all misses


def test_item_text_is_embedded_once_by_the_main_process(tmp_path: Path) -> None:
    """Two processes ask for the same embeddings: the main one loads the encoder and writes the
    cache, the other reads that cache; both get the same array."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "embedding_worker.py"), str(tmp_path)]
    finished = run_bounded(command, environment(tmp_path / "cache"), timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert sorted(path.name for path in tmp_path.glob("encoder-loaded-by-*")) == ["encoder-loaded-by-0"]
    np.testing.assert_array_equal(np.load(tmp_path / "embeddings-0.npy"), np.load(tmp_path / "embeddings-1.npy"))
    assert len(list((tmp_path / "emb").glob("*.npy"))) == 1


# -- a killed 2-process run ---------------------------------------------------------------

RUN_OPTIONS = [part for key, value in {**TINY_T5, "epochs": 8}.items() for part in ("--set", f"{key}={value}")]


def write_tiny_atomic_dataset(folder: Path, n_users: int = 40, n_items: int = 30) -> None:
    """The tiny fixture as RecBole atomic files, the format a user's own dataset comes in."""
    dataset = tiny_dataset(n_users=n_users, n_items=n_items)
    folder.mkdir(parents=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user, sequence in zip(dataset.user_ids, dataset.sequences):
        lines += [f"{user}\t{dataset.item_ids[item]}\t{step}" for step, item in enumerate(sequence.tolist())]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\ttitle:token_seq"] + [f"{item}\tthing number {item[1:]}" for item in dataset.item_ids]
    (folder / "tiny.item").write_text("\n".join(items) + "\n")


def command(data: Path, results: Path, processes: int) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "run", "--method", "p5-sid", "--dataset", "tiny", "--data-dir",
            str(data), "--quiet", "--seed", "3", *RUN_OPTIONS, "--processes", str(processes),
            "--results-dir", str(results)]


def bench_run(data: Path, cache: Path, results: Path, processes: int) -> subprocess.CompletedProcess:
    return run_bounded(command(data, results, processes), environment(cache), timeout=300)


def kill_after_first_checkpoint(data: Path, cache: Path, results: Path) -> None:
    """Start the 2-process run and kill -9 the launcher and both workers (as a scheduler
    killing the job would) once the first epoch's checkpoint is complete."""
    launcher = subprocess.Popen(command(data, results, 2), env=environment(cache), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        # Any epoch's checkpoint: the loop keeps only the newest, so epoch 1's folder may be
        # gone by the time a slower poll looks (a quiet machine finishes an epoch in a blink).
        while not list(cache.glob("work/*/checkpoints/epoch-*/state.pt")):
            assert launcher.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
    finally:
        try:
            workers = psutil.Process(launcher.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            workers = []
        for process in [launcher, *workers]:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        launcher.wait()
        psutil.wait_procs(workers, timeout=30)


def record_of(results: Path) -> dict:
    (path,) = results.glob("tiny/p5-sid/*.json")
    return read_record(path)


def test_killed_two_process_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    write_tiny_atomic_dataset(data)
    killed_cache, killed_results = tmp_path / "killed-cache", tmp_path / "killed-results"
    kill_after_first_checkpoint(data, killed_cache, killed_results)
    assert not killed_results.exists()  # nothing half-written

    refused = bench_run(data, killed_cache, killed_results, processes=1)
    assert refused.returncode != 0
    assert "resume with --processes 2" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr[-2000:]

    resumed = bench_run(data, killed_cache, killed_results, processes=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = record_of(killed_results)
    assert record["hardware"]["processes"] == 2
    assert record["method_metadata"]["resumed_from_epoch"] >= 1

    clean_results = tmp_path / "clean-results"
    clean = bench_run(data, tmp_path / "clean-cache", clean_results, processes=2)
    assert clean.returncode == 0, clean.stderr[-3000:]
    uninterrupted = record_of(clean_results)
    assert uninterrupted["method_metadata"]["resumed_from_epoch"] == 0
    assert record["per_user"] == uninterrupted["per_user"]
    assert record["method_metadata"]["final_epoch_loss"] == uninterrupted["method_metadata"]["final_epoch_loss"]


def test_sigterm_stops_every_process_of_a_two_process_run_with_one_line(tmp_path: Path) -> None:
    """SIGTERM to the launcher (as `kill -TERM` or a scheduler sends it): the agent passes it on,
    every worker stops after a whole checkpoint, the main one says where, all exit 143."""
    data, cache = tmp_path / "tiny", tmp_path / "cache"
    write_tiny_atomic_dataset(data)
    launcher = subprocess.Popen(command(data, tmp_path / "results", 2), env=environment(cache),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(cache.glob("work/*/checkpoints/epoch-*/state.pt")):
        assert launcher.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    workers = psutil.Process(launcher.pid).children(recursive=True)
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 143, stderr[-3000:]
    stops = [line for line in stderr.splitlines() if line.startswith("stopped at epoch")]
    assert len(stops) == 1 and re.fullmatch(r"stopped at epoch \d of 8; the same command resumes", stops[0]), stderr
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("method", ["idgenrec"])
def test_one_process_methods_refuse_several(method: str, tmp_path: Path) -> None:
    env = {**environment(tmp_path / "cache"), "WORLD_SIZE": "2", "RANK": "0"}
    finished = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--method", method, "--dataset", "demo",
                               "--results-dir", str(tmp_path / "results")], env=env, capture_output=True, text=True,
                              timeout=120)
    assert finished.returncode == 2
    assert f"error: method '{method}' runs in one process only" in finished.stderr


@pytest.mark.parametrize("method, refused", [("sasrec", True), ("idgenrec", True), ("p5-sid", False)])
def test_processes_option_refuses_one_process_methods_before_starting_any(method: str, refused: bool,
                                                                          monkeypatch, capsys) -> None:
    import bench.launch
    from bench.cli import main

    started = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(bench.launch, "launch", lambda processes, arguments: started.append(processes))
    monkeypatch.setattr(sys, "argv", ["bench", "run", "--method", method, "--dataset", "demo", "--processes", "2"])
    if refused:
        with pytest.raises(SystemExit) as stopped:
            main()
        assert stopped.value.code == 2 and started == []
        assert f"error: method '{method}' runs in one process only" in capsys.readouterr().err
    else:
        main()
        assert started == [2]


@pytest.mark.parametrize("method, options", [
    # SETRec's CF tokenizer (a RecBole SASRec) trains in one process under its cache lock; the
    # other process reuses it, then both train SETRec data-parallel.
    ("setrec", {"cf_epochs": 1}),
    ("tiger", {"rqvae_epochs": 20}),
    # UniSRec pre-trains on two source folders in both processes (data-parallel), the main one
    # holding the shared folder's lock and writing the model; then it fine-tunes on the target.
    ("unisrec", {"pretrain_epochs": 1, "foundation_datasets": "beauty,sports", "foundation_users": 20}),
    # Score-based over all items: the engine's data-parallel loop with sampled negatives.
    ("hstu", {}),
    # Every process builds the OPQ codes from the item text and takes the main one's; then the
    # decoder trains data-parallel.
    ("rpg", {}),
])
def test_methods_train_and_rank_in_two_processes(method: str, options: dict, tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    write_tiny_atomic_dataset(data)
    fields = {field.name for field in dataclasses.fields(methods().get(method).config_class)}
    sets = {**{key: value for key, value in TINY_T5.items() if key in fields}, "epochs": 1, **options}
    if method == "unisrec":
        from tests.methods.test_unisrec import write_source

        sets["foundation_data_dirs"] = ",".join(str(write_source(tmp_path / name, seed))
                                                for seed, name in enumerate(("beauty", "sports"), 1))
    arguments = [part for key, value in sets.items() for part in ("--set", f"{key}={value}")]
    finished = run_bounded([sys.executable, "-m", "bench.cli", "run", "--method", method, "--dataset", "tiny",
                            "--data-dir", str(data), "--quiet", *arguments, "--processes", "2",
                            "--results-dir", str(tmp_path / "results")], environment(tmp_path / "cache"), timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    (path,) = (tmp_path / "results").glob(f"tiny/{method}/*.json")  # one record, from the main process
    record = read_record(path)
    assert record["hardware"]["processes"] == 2 and record["hardware"]["distributed_backend"] == "gloo"
    assert len(record["per_user"]["HR@10"]) == record["split"]["test_users"] == 40


def test_a_finished_training_is_evaluated_by_any_process_count(tmp_path: Path) -> None:
    """1 process, then 2, then 1 on the same configuration: the last two reuse the finished
    training (no refusal, no new epoch) and give identical per-user values."""
    data = tmp_path / "tiny"
    write_tiny_atomic_dataset(data)
    cache = tmp_path / "cache"
    records = []
    for number, processes in enumerate((1, 2, 1)):
        results = tmp_path / f"results-{number}"
        finished = bench_run(data, cache, results, processes=processes)
        assert finished.returncode == 0, finished.stderr[-3000:]
        records.append(record_of(results))
    assert [record["hardware"]["processes"] for record in records] == [1, 2, 1]
    assert [record["method_metadata"]["resumed_from_epoch"] for record in records] == [0, 8, 8]
    assert records[1]["per_user"] == records[2]["per_user"] == records[0]["per_user"]
