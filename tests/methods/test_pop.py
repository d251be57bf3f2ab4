"""Popularity on the zero-shot sources: word shares against a hand count, the ranking of a
target's items by them, and no read of the target's interactions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench.config import resolve
from bench.data.split import leave_one_out
from bench.method import RunContext, TrainingData
from methods.pop import Popularity, PopularityConfig, text_popularity, text_words, word_shares
from tests.conftest import tiny_dataset
from tests.data.test_fusion import write_atomic_source
from tests.methods.test_unisrec import Guarded


def test_word_shares_count_interactions_not_items() -> None:
    texts = ["title: Red Lamp", "title: red chair; categories: Home", "title: Blue Cup"]
    assert text_words(texts[1]) == {"red", "chair", "home"}  # keys ("title", "categories") left out
    shares = word_shares(texts, np.array([0, 0, 1, 2]))
    assert shares == {"red": 3 / 4, "lamp": 2 / 4, "chair": 1 / 4, "home": 1 / 4, "blue": 1 / 4, "cup": 1 / 4}
    scores = text_popularity(["title: red lamp", "title: green lamp", "title: violet"], shares)
    np.testing.assert_allclose(scores, [(3 / 4 + 2 / 4) / 2, (0 + 2 / 4) / 2, 0.0])


def test_source_popularity_ranks_the_targets_items_by_source_words_without_reading_its_interactions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(tmp_path / "cache"))
    source = write_atomic_source(tmp_path / "health", "health", seed=1)  # titles "health gadget iN"
    config = resolve("pop", PopularityConfig, {}, "cpu", {}, {"foundation_datasets": ["health"],
                                                              "foundation_data_dirs": [str(source)]}).method
    target = tiny_dataset(n_users=10, n_items=20, seed=9)
    # Item 0 shares two source words ("gadget", "i3"), item 1 one ("gadget"), the rest none.
    texts = ["title: gadget i3", "title: gadget lamp"] + [f"title: thing {i}" for i in range(2, target.n_items)]
    split = leave_one_out(target)
    guarded = dataclasses.replace(target, item_text=texts, sequences=Guarded(target.sequences))
    guarded_split = dataclasses.replace(split, train=Guarded(split.train), valid_items=Guarded(split.valid_items),
                                        test_items=Guarded(split.test_items))
    method = Popularity(config, RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False))
    Guarded.armed = True
    try:
        method.fit(TrainingData(dataset=guarded, split=guarded_split))
    finally:
        Guarded.armed = False
    scores = method.score(np.arange(2), [np.zeros(0, dtype=np.int64)] * 2)
    assert scores.shape == (2, target.n_items) and scores[0, 0] > scores[0, 1] > 0
    assert np.all(scores[0, 2:] == 0)
    found = method.metadata()
    assert found["zero_shot"] is True and set(found["trained_on"]) == {"health"}
    assert found["items_without_a_source_word"] == target.n_items - 2
