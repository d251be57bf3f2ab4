"""Shared fixtures: an isolated cache and results store, and tiny datasets built in memory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench.data.dataset import Dataset, build_dataset
from bench.data.split import Split


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


def with_cold_targets(split: Split) -> Split:
    """A leave-one-out split of :func:`tiny_dataset` with one more test target per user, the last
    item, which no user walks to: several targets per user, warm and cold ones (the chain ends
    below it), for the within-group protocol."""
    cold = split.n_items - 1
    if any(cold in items for items in split.train):
        raise AssertionError("the fixture's last item is in a training sequence")
    return Split(train=split.train, valid_items=[np.array([target]) for target in split.valid_target],
                 test_items=[np.array([target, cold]) for target in split.test_target], n_items=split.n_items,
                 protocol="temporal")


@pytest.fixture
def tiny() -> Dataset:
    return tiny_dataset()


class Guarded(list):
    """A per-user list (sequences, training parts, targets) that raises on any read while armed."""

    armed = True

    def _check(self) -> None:
        if Guarded.armed:
            raise AssertionError("the evaluated dataset's interactions were read before evaluation")

    def __getitem__(self, index):
        self._check()
        return super().__getitem__(index)

    def __iter__(self):
        self._check()
        return super().__iter__()

    def __len__(self):
        self._check()
        return super().__len__()


def guarded(dataset: Dataset, split: Split) -> tuple[Dataset, Split]:
    """Copies of ``dataset`` and ``split`` whose interactions raise when read while
    ``Guarded.armed``: a zero-shot fit must never read them."""
    guarded_split = dataclasses.replace(split, **{field.name: Guarded(getattr(split, field.name))
                                                  for field in dataclasses.fields(split)
                                                  if isinstance(getattr(split, field.name), list)})
    return dataclasses.replace(dataset, sequences=Guarded(dataset.sequences)), guarded_split
