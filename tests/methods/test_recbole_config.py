"""Every numeric option of every RecBole baseline has an allowed range, and a value outside it
is a one-line error naming the key (through the config layer, and through the CLI for the
values that used to end in a traceback); so is a vocabulary too small for the text. The
engine's ``device``/``precision`` options reach RecBole's own switches."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import recbole_compat
from bench.config import resolve
from bench.devices import DeviceConfig
from bench.runtime import start_runtime
from bench.errors import BenchError
from bench.method import TrainingData
from tests.methods.test_recbole_baselines import DATASET, MODELS, SPLIT, make_method

PROJECT = Path(__file__).resolve().parents[2]
BAD_VALUES = {  # key: (a value outside the range, words of the allowed range)
    "epochs": ("-1", "at least 1"), "train_batch_size": ("0", "at least 1"), "learning_rate": ("-1", "positive"),
    "max_seq_length": ("0", "at least 1"), "threads": ("-2", "0 or more"),
    "weight_decay": ("-0.1", "0 or more"), "stopping_step": ("0", "at least 1"), "eval_step": ("0", "at least 1"),
    "eval_batch_size": ("0", "at least 1"), "max_train_minutes": ("-5", "0 or more"),
    "embedding_size": ("0", "at least 1"), "hidden_size": ("0", "at least 1"), "num_layers": ("0", "at least 1"),
    "dropout_prob": ("1", "in [0, 1)"), "hidden_dropout_prob": ("1.5", "in [0, 1)"),
    "attn_dropout_prob": ("-0.1", "in [0, 1)"), "reg_weight": ("-1", "0 or more"), "nv": ("0", "at least 1"),
    "nh": ("0", "at least 1"), "n_layers": ("0", "at least 1"), "n_heads": ("0", "at least 1"),
    "inner_size": ("0", "at least 1"), "mask_ratio": ("0", "in (0, 1)"), "ft_ratio": ("1.2", "in [0, 1]"),
    "pretrain_epochs": ("0", "at least 1"),
}
CASES = [(name, key) for name, method in MODELS.items()
         for key in (f.name for f in dataclasses.fields(method.config_class)) if key in BAD_VALUES]


def resolve_for(name: str, sets: dict[str, str]):
    method = MODELS[name]
    return resolve(name, method.config_class, method.profiles, "cpu", {}, sets)


def test_every_numeric_option_has_a_range_and_a_bad_value_here():
    device_options = {field.name for field in dataclasses.fields(DeviceConfig)}  # checked by DeviceConfig
    for method in MODELS.values():
        for field in dataclasses.fields(method.config_class):
            if typing.get_type_hints(method.config_class)[field.name] in (int, float):
                assert field.metadata.get("range") is not None or field.name in device_options, field.name
                assert field.name in BAD_VALUES, field.name


@pytest.mark.parametrize("name, key", CASES)
def test_bad_value_names_the_key_and_the_range(name, key):
    value, allowed = BAD_VALUES[key]
    with pytest.raises(BenchError, match=f"config key '{key}' must be {re.escape(allowed)}"):
        resolve_for(name, {key: value})


@pytest.mark.parametrize("name", list(MODELS))
def test_defaults_and_cpu_profile_are_valid(name):
    resolve_for(name, {})
    method = MODELS[name]
    resolve(name, method.config_class, method.profiles, "paper", {}, {})


def test_heads_must_divide_the_hidden_size():
    with pytest.raises(BenchError, match="'hidden_size' must be a multiple of 'n_heads' \\(3\\), got 64"):
        resolve_for("sasrec", {"n_heads": "3"})


@pytest.mark.parametrize("sets, fragment", [
    ({"device": "gpu"}, "config key 'device' must be one of auto, cpu, cuda, cuda:N, mps"),
    ({"device": "cuda:x"}, "config key 'device' must be one of"),
    ({"precision": "fp8"}, "config key 'precision' must be one of auto, fp32, bf16, fp16"),
    ({"device": "cpu", "precision": "fp16"}, "'fp16', which needs a CUDA device"),
])
def test_device_and_precision_take_the_engine_values(sets, fragment):
    with pytest.raises(BenchError, match=re.escape(fragment)):
        resolve_for("sasrec", sets)
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        resolve_for("gru4rec", {"device": device, "precision": "bf16"})


@pytest.mark.parametrize("device, precision, expected", [
    (torch.device("cpu"), "fp32", {"use_gpu": False, "gpu_id": "", "enable_amp": False, "enable_scaler": False}),
    (torch.device("cpu"), "bf16", {"use_gpu": False, "gpu_id": "", "enable_amp": True, "enable_scaler": False}),
    (torch.device("cuda", 1), "fp16", {"use_gpu": True, "gpu_id": "1", "enable_amp": True, "enable_scaler": True}),
    (torch.device("cuda", 0), "bf16", {"use_gpu": True, "gpu_id": "0", "enable_amp": True, "enable_scaler": False}),
    (torch.device("mps"), "fp32", {"use_gpu": False, "gpu_id": "", "enable_amp": False, "enable_scaler": False}),
])
def test_device_and_precision_map_onto_recbole_switches(device, precision, expected):
    assert recbole_compat.device_options(device, precision) == expected


def test_recbole_config_trains_on_the_runtime_device_and_keeps_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")
    options = {"dataset": "bench", "data_path": str(tmp_path), "train_neg_sample_args": None,
               **recbole_compat.device_options(torch.device("cuda", 1), "fp32")}
    # RecBole itself would pick "cuda" (the first visible GPU) or, without CUDA, the CPU.
    config = recbole_compat.make_config("SASRec", options, device=torch.device("cuda", 1))
    assert config["device"] == torch.device("cuda", 1) and config["single_spec"]  # no DDP
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,4"


@pytest.mark.parametrize("precision, dtype", [("fp32", None), ("bf16", torch.bfloat16)])
def test_training_runs_under_the_chosen_autocast(precision, dtype, tmp_path, monkeypatch):
    """bf16 on this CPU: RecBole's Trainer autocasts each loss; fp32 never does."""
    recbole_compat.ensure_compatible()
    from recbole.model.sequential_recommender.sasrec import SASRec

    seen, calculate_loss = [], SASRec.calculate_loss

    def watched(self, interaction):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return calculate_loss(self, interaction)

    monkeypatch.setattr(SASRec, "calculate_loss", watched)
    torch.set_num_threads(1)
    made = make_method("sasrec", tmp_path)
    config = dataclasses.replace(made.config, device="cpu", precision=precision)
    # As the runner makes it: the context's runtime built from the config's device options.
    method = type(made)(config, dataclasses.replace(made.context, runtime=start_runtime(config)))
    before = torch.get_autocast_dtype("cpu")
    method.fit(TrainingData(dataset=DATASET, split=SPLIT))
    assert seen and set(seen) == {dtype}
    assert torch.get_autocast_dtype("cpu") == before
    assert method.runtime.hardware()["precision"] == precision
    scores = method.score(np.arange(3), SPLIT.histories("test")[:3])
    assert scores.dtype == np.float64 and np.isfinite(scores).all()


def bench(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, env=env,
                          cwd=PROJECT, timeout=300)


@pytest.mark.parametrize("method, setting, fragments", [
    ("sasrec", "epochs=-1", ["'epochs'", "at least 1", "-1"]),  # was a FileNotFoundError traceback
    ("gru4rec", "threads=-2", ["'threads'", "0 or more"]),  # was a RuntimeError from torch
    ("p5-sid", "vocab_size=10", ["'vocab_size'", "must be at least", "got 10"]),  # was SentencePiece's RuntimeError
    ("sasrec", "device=cuda", ["'device'", "no CUDA device"]),  # this machine has none
])
def test_cli_gives_one_line_error_for_bad_values(tmp_path, method, setting, fragments):
    result = bench("run", "--method", method, "--dataset", "demo", "--set", setting, "--quiet",
                   "--results-dir", str(tmp_path / "results"), cache=tmp_path / "cache")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    assert result.stdout == "" and not (tmp_path / "results").exists()
