"""Every numeric option of every RecBole baseline has an allowed range, and a value outside it
is a one-line error naming the key (through the config layer, and through the CLI for the
values that used to end in a traceback); so is a vocabulary too small for the text."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from bench.config import resolve
from bench.errors import BenchError
from methods import recbole_baselines
from tests.methods.test_recbole_baselines import MODELS

PROJECT = Path(__file__).resolve().parents[2]
BAD_VALUES = {  # key: (a value outside the range, words of the allowed range)
    "epochs": ("-1", "at least 1"), "train_batch_size": ("0", "at least 1"), "learning_rate": ("-1", "positive"),
    "max_seq_length": ("0", "at least 1"), "threads": ("-2", "0 (torch's default) or more"),
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
    for method in MODELS.values():
        for field in dataclasses.fields(method.config_class):
            if typing.get_type_hints(method.config_class)[field.name] in (int, float):
                assert field.name in recbole_baselines.OPTION_RANGES, field.name
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


def bench(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, env=env,
                          cwd=PROJECT, timeout=300)


@pytest.mark.parametrize("method, setting, fragments", [
    ("sasrec", "epochs=-1", ["'epochs'", "at least 1", "-1"]),  # was a FileNotFoundError traceback
    ("gru4rec", "threads=-2", ["'threads'", "0 (torch's default) or more"]),  # was a RuntimeError from torch
    ("p5-sid", "vocab_size=10", ["'vocab_size'", "must be at least", "got 10"]),  # was SentencePiece's RuntimeError
])
def test_cli_gives_one_line_error_for_bad_values(tmp_path, method, setting, fragments):
    result = bench("run", "--method", method, "--dataset", "demo", "--set", setting, "--quiet",
                   "--results-dir", str(tmp_path / "results"), cache=tmp_path / "cache")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    assert result.stdout == "" and not (tmp_path / "results").exists()
