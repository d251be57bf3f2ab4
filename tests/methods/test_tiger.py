"""TIGER: unique Semantic IDs, codebook usage on a clustered fixture, code-token inputs, and
ranking by beam search constrained to the catalogue's code tuples."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.split import leave_one_out
from bench.engine.tokenizer import whole_token_tokenizer
from bench.errors import BenchError
from bench.method import RunContext, TrainingData
from bench.runtime import cpu_runtime
from methods.tiger import rqvae
from methods.tiger.method import TIGER, TIGERConfig, user_token
from methods.tiger.rqvae import RQVAESettings, add_collision_code, code_statistics, semantic_ids
from tests.conftest import tiny_dataset

SMALL_T5 = dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, batch_size=16, epochs=2, threads=1,
                beam_width=20, user_tokens=50)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def context(tmp_path: Path) -> RunContext:
    return RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)


def clustered_embeddings(n_items: int, n_clusters: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    points = centers[rng.integers(0, n_clusters, n_items)] + 0.3 * rng.normal(size=(n_items, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_collision_code_makes_every_tuple_unique() -> None:
    codes = np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 2, 3], [0, 0, 1]])
    unique = add_collision_code(codes, codebook_size=4)
    # §3.1: the items sharing (1, 2, 3) get 0, 1, 2 in item order; lone tuples get 0.
    assert unique[:, -1].tolist() == [0, 1, 0, 2, 0]
    assert len({tuple(row) for row in unique.tolist()}) == len(codes)
    assert code_statistics(codes, 4)["collision_rate"] == 0.6
    with pytest.raises(BenchError, match="5 items share one semantic ID"):
        add_collision_code(np.zeros((5, 3), dtype=np.int64), codebook_size=4)


@pytest.mark.parametrize("mode", ["rqvae", "rkmeans", "random"])
def test_every_item_gets_a_unique_code_tuple(tmp_path: Path, mode: str) -> None:
    embeddings = clustered_embeddings(300, 20, 24)
    settings = RQVAESettings(latent_dim=8, codebook_size=16, epochs=20, batch_size=128)
    ids = semantic_ids(embeddings if mode != "random" else None, 300, settings, mode, 0, context(tmp_path))
    assert ids.codes.shape == (300, 4)
    assert ids.codes.min() >= 0 and ids.codes.max() < 16
    assert len({tuple(row) for row in ids.codes.tolist()}) == 300


def test_residual_kmeans_codes_follow_the_clusters_and_shrink_the_residual(tmp_path: Path) -> None:
    """Level 1 puts the items of one cluster of the fixture on one code; each level leaves less
    of the embeddings unexplained, so with more levels the codes are finer."""
    from methods.tiger.rkmeans import residual_kmeans_codes

    rng = np.random.default_rng(3)
    centers = 4.0 * rng.normal(size=(8, 16))
    cluster = rng.integers(0, 8, 400)
    embeddings = centers[cluster] + 0.1 * rng.normal(size=(400, 16))
    codes, report = residual_kmeans_codes(embeddings, levels=1, codebook_size=8, seed=0)
    assert all(len(np.unique(codes[cluster == c, 0])) == 1 for c in range(8))
    assert len(np.unique(codes[:, 0])) == 8
    _, deeper = residual_kmeans_codes(embeddings, levels=3, codebook_size=8, seed=0)
    assert deeper["rkmeans_unexplained_share"] < report["rkmeans_unexplained_share"]


def test_codebook_usage_stays_above_a_floor(tmp_path: Path) -> None:
    """The collapse users report (all items on a few codes) must not happen on clustered data."""
    embeddings = clustered_embeddings(1024, 40, 64)
    settings = RQVAESettings(latent_dim=16, codebook_size=32, epochs=40, batch_size=256)
    ids = semantic_ids(embeddings, 1024, settings, "rqvae", 0, context(tmp_path))
    usage = ids.report["codebook_usage"]
    assert len(usage) == 3 and min(usage) >= 0.75, usage  # measured: 1.0, 0.94, 0.97
    assert ids.report["collision_rate"] < 0.5 and ids.report["largest_collision_group"] <= 32


def test_adagrad_from_a_zero_accumulator_collapses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the accumulator starts at 0.1: from 0 (torch's default) the first steps move every
    weight by the full rate 0.4 and the codes collapse. The same fixture as above."""
    monkeypatch.setattr(rqvae, "ADAGRAD_INITIAL_ACCUMULATOR", 0.0)
    embeddings = clustered_embeddings(1024, 40, 64)
    settings = RQVAESettings(latent_dim=16, codebook_size=32, epochs=40, batch_size=256)
    # Measured: every item on one tuple, so the collision code overflows.
    with pytest.raises(BenchError, match="1024 items share one semantic ID"):
        semantic_ids(embeddings, 1024, settings, "rqvae", 0, context(tmp_path))


def test_dead_code_restarts_revive_unused_codes(tmp_path: Path) -> None:
    embeddings = clustered_embeddings(512, 4, 32)  # 4 clusters, 32 codes: most codes die
    settings = RQVAESettings(latent_dim=8, codebook_size=32, epochs=10, batch_size=512, restart_dead_codes=True)
    report = semantic_ids(embeddings, 512, settings, "rqvae", 0, context(tmp_path)).report
    assert report["rqvae_restarted_codes"] > 0


def test_user_tokens_are_hashed_stably() -> None:
    tokens = [user_token(f"user{index}", 50) for index in range(500)]
    assert tokens == [user_token(f"user{index}", 50) for index in range(500)]
    assert {int(token[3:-1]) for token in tokens} <= set(range(50)) and len(set(tokens)) > 40


def test_config_checks() -> None:
    with pytest.raises(BenchError, match="'levels' must be at most 25"):
        TIGERConfig(levels=26)
    with pytest.raises(BenchError, match="'codebook_size' must be at least 1"):
        TIGERConfig(codebook_size=0)
    assert TIGERConfig().semantic_ids == "rqvae"


def test_whole_token_tokenizer() -> None:
    tokenizer = whole_token_tokenizer(["<a_0>", "<a_1>", "<u_0>"])
    assert tokenizer("<u_0> <a_1> <a_0>").input_ids == [5, 4, 3, 1]  # EOS appended
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id == 2
    with pytest.raises(BenchError, match="appears twice"):
        whole_token_tokenizer(["<a_0>", "<a_0>"])


def fitted_tiger(tmp_path: Path, **overrides) -> tuple[TIGER, TrainingData]:
    dataset = tiny_dataset(n_users=24, n_items=20)
    data = TrainingData(dataset=dataset, split=leave_one_out(dataset))
    config = TIGERConfig(**{**SMALL_T5, "semantic_ids": "random", "codebook_size": 4, **overrides})
    method = TIGER(config, context(tmp_path))
    method.fit(data)
    return method, data


def test_inputs_are_code_tokens_and_the_search_returns_catalogue_tuples(tmp_path: Path) -> None:
    method, data = fitted_tiger(tmp_path)
    users = np.arange(data.split.n_users)
    histories = data.split.histories("test")
    prompt = method.prompts(users[:1], histories[:1])[0].split()
    assert prompt[0] == method.users[0] and len(prompt) == 1 + 4 * len(histories[0][-20:])
    assert all(token.startswith(("<a_", "<b_", "<c_", "<d_")) for token in prompt[1:])

    from bench.engine.beam_search import constrained_beam_search

    encoded = method.tokenizer(method.prompts(users, histories), padding=True, return_tensors="pt")
    items, scores = constrained_beam_search(method.model, encoded.input_ids, encoded.attention_mask, method.trie,
                                            beam_width=data.n_items, num_results=10, runtime=cpu_runtime())
    assert items.min() >= 0 and items.max() < data.n_items
    assert all(len(set(row)) == 10 for row in items.tolist())
    # Brute force: the teacher-forced log-probability of every catalogue tuple; with a beam as
    # wide as the catalogue the search must return exactly the 10 best tuples.
    targets = method.tokenizer(method.identifiers, padding=True, return_tensors="pt").input_ids
    with torch.no_grad():
        for user in range(3):
            logits = method.model(input_ids=encoded.input_ids[user:user + 1].expand(data.n_items, -1),
                                  attention_mask=encoded.attention_mask[user:user + 1].expand(data.n_items, -1),
                                  labels=targets).logits
            totals = torch.log_softmax(logits, -1).gather(2, targets.unsqueeze(2)).squeeze(2).sum(1)
            best = torch.argsort(totals, descending=True, stable=True)[:10]
            assert items[user].tolist() == best.tolist()
            torch.testing.assert_close(scores[user], totals[best], atol=1e-4, rtol=0)


def test_metadata_and_resume_reuse_the_codes(tmp_path: Path) -> None:
    method, _ = fitted_tiger(tmp_path)
    found = method.metadata()
    assert found["semantic_ids"] == "random" and found["text_encoder"] is None
    assert found["vocab_size"] == 3 + 4 * 4 + 50 and found["max_id_tokens"] == 4
    assert len(found["codebook_usage"]) == 3 and 0 <= found["collision_rate"] <= 1
    again, _ = fitted_tiger(tmp_path)  # same work dir: the stored codes are read back
    assert again.identifiers == method.identifiers


def test_rqvae_ids_record_the_text_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.engine import text_embeddings

    class FakeEncoder:
        def encode(self, texts, **_):
            return clustered_embeddings(len(texts), 3, 12, seed=len(texts))

        def get_embedding_dimension(self) -> int:
            return 12

    monkeypatch.setattr(text_embeddings, "load_encoder", lambda *_, **__: FakeEncoder())
    method, _ = fitted_tiger(tmp_path, semantic_ids="rqvae", rqvae_epochs=5, latent_dim=4)
    found = method.metadata()
    assert found["text_encoder"] == "all-MiniLM-L6-v2" and found["text_embedding_dim"] == 12
    assert found["rqvae_epochs"] == 5
    assert dataclasses.asdict(method.config)["semantic_ids"] == "rqvae"
