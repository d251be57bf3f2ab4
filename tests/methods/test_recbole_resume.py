"""A RecBole run killed mid-training and started again gives what an uninterrupted run gives:
in process (a raised exception) for the models that draw from each random source, and
through the CLI with a real SIGKILL, as a user meets it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import recbole_compat
from bench.method import TrainingData
from bench.portable_paths import local_path
from bench.results import read_record
from methods import recbole_baselines
from tests.methods.test_recbole_baselines import DATASET, SPLIT, make_method

PROJECT = Path(__file__).resolve().parents[2]
DATA = TrainingData(dataset=DATASET, split=SPLIT)


class Killed(Exception):
    """Stands in for a kill: raised when an epoch's validation starts (its training done)."""


def kill_at_validation(monkeypatch: pytest.MonkeyPatch, validation: int) -> None:
    recbole_compat.ensure_compatible()
    from recbole.trainer.trainer import Trainer

    original, calls = Trainer._valid_epoch, [0]

    def dying(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == validation:
            raise Killed()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_valid_epoch", dying)


def tiny_method(name: str, work_dir: Path, **options):
    method = make_method(name, work_dir)
    method.config = dataclasses.replace(method.config, **{"epochs": 4, "stopping_step": 4, **options})
    return method


@pytest.mark.parametrize("name, options, killed_at_validation", [
    ("gru4rec", {"loss_type": "BPR"}, 3),  # numpy: RecBole's negative sampler
    # Python's random: the cloze masking (a ratio of 0.2 leaves a small batch unmasked: NaN loss)
    ("bert4rec", {"mask_ratio": 0.4}, 3),
    # Killed after pre-training, before any fine-tuning state: pre-training drew from the
    # loaders' generator in the uninterrupted run, not in the resumed one.
    ("s3rec", {}, 1),
])
def test_killed_run_resumes_to_identical_scores(name, options, killed_at_validation, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    whole = tiny_method(name, tmp_path / "whole", **options)
    whole.fit(DATA)
    users, histories = np.arange(SPLIT.n_users), SPLIT.histories("test")
    with monkeypatch.context() as patch:
        kill_at_validation(patch, killed_at_validation)
        with pytest.raises(Killed):
            tiny_method(name, tmp_path / "killed", **options).fit(DATA)
    resumed = tiny_method(name, tmp_path / "killed", **options)
    resumed.fit(DATA)
    facts, expected_facts = resumed.metadata(), whole.metadata()
    # The state saved at the start of epoch k is the one epoch k - 1 left.
    assert facts.get("resumed_after_epoch") == (killed_at_validation - 2 if killed_at_validation > 1 else None)
    np.testing.assert_array_equal(resumed.score(users, histories), whole.score(users, histories))
    assert facts["training_curve"] == expected_facts["training_curve"]
    assert facts["best_epoch"] == expected_facts["best_epoch"]


def test_killed_pretraining_resumes_to_identical_scores(tmp_path, monkeypatch):
    """S3Rec killed in its third pre-training epoch continues from the state the second left
    (not from scratch) and ends where an uninterrupted run ends."""
    torch.set_num_threads(1)
    options = {"pretrain_epochs": 3, "epochs": 2, "stopping_step": 2}
    whole = tiny_method("s3rec", tmp_path / "whole", **options)
    whole.fit(DATA)
    recbole_compat.ensure_compatible()
    from recbole.trainer.trainer import S3RecTrainer

    original = S3RecTrainer._train_epoch

    def dying(self, train_data, epoch_idx, *args, **kwargs):
        if self.config["train_stage"] == "pretrain" and epoch_idx == 2:
            raise Killed()
        return original(self, train_data, epoch_idx, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(S3RecTrainer, "_train_epoch", dying)
        with pytest.raises(Killed):
            tiny_method("s3rec", tmp_path / "killed", **options).fit(DATA)
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert (checkpoints / recbole_baselines.PRETRAINING_STATE_FILE).is_file()
    resumed = tiny_method("s3rec", tmp_path / "killed", **options)
    resumed.fit(DATA)
    assert resumed.metadata()["pretraining_resumed_after_epoch"] == 1
    assert not (checkpoints / recbole_baselines.PRETRAINING_STATE_FILE).exists()
    users, histories = np.arange(SPLIT.n_users), SPLIT.histories("test")
    np.testing.assert_array_equal(resumed.score(users, histories), whole.score(users, histories))
    assert resumed.metadata()["training_curve"] == whole.metadata()["training_curve"]


def test_time_budget_counts_training_time_across_resumes(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    minutes = 30.0
    with monkeypatch.context() as patch:
        kill_at_validation(patch, 3)
        with pytest.raises(Killed):
            tiny_method("sasrec", tmp_path, max_train_minutes=minutes).fit(DATA)
    # As if the killed process had trained for the whole budget before epoch 2.
    state_file = tmp_path / "checkpoints" / recbole_baselines.TRAINING_STATE_FILE
    state = recbole_compat.load_checkpoint(state_file)
    state["harness"]["training_seconds"] = 60 * minutes
    recbole_compat.save_atomically(state, state_file)
    resumed = tiny_method("sasrec", tmp_path, max_train_minutes=minutes)
    resumed.fit(DATA)
    facts = resumed.metadata()
    assert facts["stopped_by"] == "time budget" and facts["epochs_trained"] == 3
    assert facts["training_seconds"] >= 60 * minutes


def test_a_best_checkpoint_without_its_training_state_is_not_resumed(tmp_path):
    """A work folder from an older version holds only RecBole's best checkpoint: training
    starts over rather than continuing inexactly from it."""
    torch.set_num_threads(1)
    first = tiny_method("gru4rec", tmp_path, epochs=2, stopping_step=2)
    first.fit(DATA)
    (tmp_path / "finished.json").unlink()
    (tmp_path / "checkpoints" / recbole_baselines.TRAINING_STATE_FILE).unlink()
    again = tiny_method("gru4rec", tmp_path, epochs=2, stopping_step=2)
    again.fit(DATA)
    assert "resumed_after_epoch" not in again.metadata()
    assert again.metadata()["training_curve"] == first.metadata()["training_curve"]


# -- through the CLI, killed for real ---------------------------------------------------------

RUN = ["run", "--method", "sasrec", "--dataset", "toys", "--quiet", "--set", "epochs=5", "--set", "stopping_step=5",
       "--set", "threads=1", "--set", "train_batch_size=32", "--set", "hidden_size=16", "--set", "inner_size=32",
       "--set", "n_layers=1"]
# Runs the CLI in a process that SIGKILLs itself when RecBole starts to validate epoch 2.
KILLED_CLI = """
import os, signal, sys
from bench import recbole_compat
recbole_compat.ensure_compatible()
from recbole.trainer.trainer import Trainer
validate, calls = Trainer._valid_epoch, []
def dying(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return validate(self, *args, **kwargs)
Trainer._valid_epoch = dying
sys.argv = ["bench", *sys.argv[1:]]
from bench.cli import main
main()
"""


def write_openp5_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    lines = []
    for user, (history, valid_item, test_item) in enumerate(zip(SPLIT.train, SPLIT.valid_target, SPLIT.test_target)):
        items = [*history.tolist(), int(valid_item), int(test_item)]
        lines.append(" ".join([f"u{user}", *(f"i{item}" for item in items)]))
    (folder / "user_sequence.txt").write_text("\n".join(lines) + "\n")


def bench(args: list[str], cache: Path, code: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "bench.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT, timeout=300)


def test_cli_run_killed_by_sigkill_resumes_to_identical_per_user_values(tmp_path):
    folder = tmp_path / "toys"
    write_openp5_folder(folder)
    args = [*RUN, "--data-dir", str(folder), "--results-dir", str(tmp_path / "results")]
    whole = bench(args, tmp_path / "cache-whole")
    assert whole.returncode == 0, whole.stderr
    killed = bench(args, tmp_path / "cache-killed", code=KILLED_CLI)
    assert killed.returncode == -9, killed.stderr
    assert len(list((tmp_path / "results").rglob("*.json"))) == 1  # the killed run wrote no record
    resumed = bench(args, tmp_path / "cache-killed")
    assert resumed.returncode == 0, resumed.stderr
    expected = read_record(Path(whole.stdout.strip().splitlines()[-1]))
    record = read_record(Path(resumed.stdout.strip().splitlines()[-1]))
    assert record["method_metadata"]["resumed_after_epoch"] == 1
    assert record["per_user"] == expected["per_user"]
    assert record["metrics"] == expected["metrics"]
    assert record["hardware"]["device_type"] == "cpu" and record["hardware"]["precision"] == "fp32"
    # Quiet means quiet: the result table and the record path, nothing else; the whole story
    # (both attempts, RecBole's epochs included) is in the log file the record names.
    for result in (whole, resumed):
        assert result.stderr == ""
        assert result.stdout.startswith("| method") and "epoch" not in result.stdout
    log = local_path(record["log_file"], tmp_path / "cache-killed").read_text()
    assert log.count("epoch 1 training") == 1 and log.count("epoch 2 training") == 2  # killed while validating 2
    assert "resuming from" in log and "epoch 4 training" in log


def test_a_run_finished_before_the_device_and_precision_options_is_reused_not_retrained(tmp_path, monkeypatch):
    """A finished run whose fingerprint was taken before ``device``/``precision`` existed (the
    options are at their defaults now) is loaded as finished; any other fingerprint trains anew."""
    torch.set_num_threads(1)
    first = tiny_method("gru4rec", tmp_path / "run")
    fingerprints: list[tuple[dict, str]] = []
    original = recbole_baselines.GRU4Rec._fingerprint

    def spy(self, data_digest, config):
        fingerprints.append((config, original(self, data_digest, config)))
        return fingerprints[-1][1]

    with monkeypatch.context() as patch:
        patch.setattr(recbole_baselines.GRU4Rec, "_fingerprint", spy)
        first.fit(DATA)
    (_, now), (earlier_config, earlier) = fingerprints
    assert {"device", "precision"} & set(earlier_config) == set() and earlier != now
    finished = tmp_path / "run" / "finished.json"
    users, histories = np.arange(SPLIT.n_users), SPLIT.histories("test")

    def trains(self, *args, **kwargs):
        raise AssertionError("trained again")

    for fingerprint, retrains in ((earlier, False), ("not-this-run", True)):
        finished.write_text(json.dumps({**json.loads(finished.read_text()), "fingerprint": fingerprint}))
        with monkeypatch.context() as patch:
            patch.setattr(recbole_baselines.GRU4Rec, "_train", trains)
            again = tiny_method("gru4rec", tmp_path / "run")
            if retrains:
                with pytest.raises(AssertionError, match="trained again"):
                    again.fit(DATA)
            else:
                again.fit(DATA)
                np.testing.assert_array_equal(again.score(users, histories), first.score(users, histories))
