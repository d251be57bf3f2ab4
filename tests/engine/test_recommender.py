"""A generative recommender from an ID scheme alone: trains, ranks valid distinct items, checks IDs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench.data.split import leave_one_out
from bench.engine.recommender import FixedIDConfig, GenerativeRecommender
from bench.errors import BenchError
from bench.method import RunContext, TrainingData
from tests.conftest import tiny_dataset

CONFIG = FixedIDConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=150, epochs=2,
                       batch_size=16, beam_width=5)



class NumberIds(GenerativeRecommender):
    def item_identifiers(self, data: TrainingData) -> list[str]:
        return [f"item {index}" for index in range(data.n_items)]


class TokenIds(GenerativeRecommender):
    """Two added tokens per item, as collaborative-indexing schemes write them."""

    def item_identifiers(self, data: TrainingData) -> list[str]:
        return [f"<A{index % 4}><B{index // 4}>" for index in range(data.n_items)]

    def extra_tokens(self) -> list[str]:
        return [f"<A{i}>" for i in range(4)] + [f"<B{i}>" for i in range(10)]


class SharedIds(GenerativeRecommender):
    def item_identifiers(self, data: TrainingData) -> list[str]:
        return [f"item {min(index, 5)}" for index in range(data.n_items)]


def fitted(method_class: type, tmp_path: Path, config: FixedIDConfig = CONFIG, profile: str = "cpu"):
    dataset = tiny_dataset(n_users=24, n_items=20)
    data = TrainingData(dataset=dataset, split=leave_one_out(dataset))
    method = method_class(config, RunContext(work_dir=tmp_path, seed=0, profile=profile, show_progress=False))
    method.fit(data)
    return method, data


def test_rank_returns_valid_distinct_items(tmp_path: Path) -> None:
    method, data = fitted(NumberIds, tmp_path)
    users = np.arange(data.split.n_users)
    histories = data.split.histories("test")
    for k in (3, 10):  # k above beam_width widens the beam to k
        ranking = method.rank(users, histories, k)
        assert ranking.shape == (len(users), k)
        assert ranking.min() >= 0 and ranking.max() < data.n_items
        assert all(len(set(row)) == k for row in ranking.tolist())
    metadata = method.metadata()
    assert metadata["epochs"] == 2 and metadata["examples_per_epoch"] == sum(len(s) - 1 for s in data.split.train)
    assert metadata["vocab_size"] == len(method.tokenizer) and metadata["parameters"] > 0
    assert (tmp_path / "checkpoints" / "epoch-0002").is_dir()
    assert method.prompts(users[:1], histories[:1])[0].count("item ") == len(histories[0])


def test_added_tokens_form_the_ids(tmp_path: Path) -> None:
    method, data = fitted(TokenIds, tmp_path)
    tokenizer = method.tokenizer
    assert tokenizer("<A1><B3>", add_special_tokens=False).input_ids == \
        [tokenizer.convert_tokens_to_ids("<A1>"), tokenizer.convert_tokens_to_ids("<B3>")]
    assert method.model.get_input_embeddings().num_embeddings == len(tokenizer)
    ranking = method.rank(np.arange(4), data.split.histories("test")[:4], 5)
    assert ranking.shape == (4, 5) and ranking.min() >= 0


def test_user_ids_go_into_prompts_when_asked(tmp_path: Path) -> None:
    method, data = fitted(NumberIds, tmp_path, dataclasses.replace(CONFIG, with_user_id=True, epochs=1))
    prompt = method.prompts(np.array([3]), [data.split.histories("test")[3]])[0]
    assert data.dataset.user_ids[3] in prompt


def test_shared_identifier_names_both_items(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"items 'i\d+' and 'i\d+' share the identifier 'item 5'"):
        fitted(SharedIds, tmp_path)


def test_wrong_number_of_identifiers_is_an_error(tmp_path: Path) -> None:
    class TooFew(GenerativeRecommender):
        def item_identifiers(self, data: TrainingData) -> list[str]:
            return ["item 0"]

    n_items = tiny_dataset(n_users=24, n_items=20).n_items
    with pytest.raises(BenchError, match=f"returned 1 IDs for {n_items} items"):
        fitted(TooFew, tmp_path)


def test_paper_profile_offline_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(BenchError, match="--profile cpu"):
        fitted(NumberIds, tmp_path, profile="paper")
