"""Shared fixtures: an isolated cache and results store, and tiny datasets built in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data.dataset import Dataset, build_dataset


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(cache))
    return cache


def tiny_dataset(n_users: int = 40, n_items: int = 30, seed: int = 0) -> Dataset:
    """Users walk forward along one chain of items: the next item is the last item + 1."""
    rng = np.random.default_rng(seed)
    sequences = []
    for user in range(n_users):
        start = int(rng.integers(0, n_items - 8))
        length = int(rng.integers(4, 8))
        sequences.append((f"u{user}", [f"i{start + step}" for step in range(length)]))
    text = {f"i{i}": f"title: thing number {i}; categories: toys, group {i % 3}" for i in range(n_items)}
    attributes = {f"i{i}": ["toys", f"group {i % 3}"] for i in range(n_items)}
    return build_dataset("tiny", sequences, text, attributes, {"format": "test"})


@pytest.fixture
def tiny() -> Dataset:
    return tiny_dataset()
