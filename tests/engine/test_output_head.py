"""The ID-token output layer: T5's layer at the ID tokens' columns, its loss and its beam search."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.engine.beam_search import constrained_beam_search
from bench.engine.model import T5EngineConfig, build_small_model
from bench.engine.output_head import IDTokenHead, output_columns, seq2seq_loss, use_id_token_head
from bench.engine.trie import ItemTrie
from bench.errors import BenchError
from bench.runtime import cpu_runtime
from tests.engine.test_recommender import CONFIG, TokenIds, fitted

SMALL = T5EngineConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16)
VOCAB = 60
EOS, PAD = 1, 0
# Three items of two ID tokens each, drawn from tokens 40-45.
ITEMS = [[40, 43, EOS], [40, 44, EOS], [41, 45, EOS]]
ID_TOKENS = sorted({token for tokens in ITEMS for token in tokens})


def _model(seed: int = 3):
    model = build_small_model(SMALL, VOCAB, seed)
    model.eval()
    return model


def _logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Teacher-forced logits: the decoder reads the labels shifted right."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 decoder_input_ids=model._shift_right(batch["labels"])).logits


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(2, 40, (4, 7), generator=generator)
    labels = torch.tensor([ITEMS[0], ITEMS[1], ITEMS[2], [41, 45, -100]])
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def test_the_head_scores_the_id_tokens_with_t5s_weights() -> None:
    full, restricted = _model(), _model()
    keys = set(restricted.state_dict())
    head = use_id_token_head(restricted, ID_TOKENS)
    assert set(restricted.state_dict()) == keys  # checkpoints load either way
    assert head.weight is restricted.shared.weight  # still tied to the input embeddings
    batch = _batch()
    with torch.no_grad():
        expected = _logits(full, batch)[..., ID_TOKENS]
        got = _logits(restricted, batch)
    assert got.shape[-1] == len(ID_TOKENS)
    torch.testing.assert_close(got, expected)
    assert output_columns(restricted, torch.tensor([40, EOS, 45])).tolist() == [
        ID_TOKENS.index(40), ID_TOKENS.index(EOS), ID_TOKENS.index(45)]


def test_the_loss_is_cross_entropy_over_the_id_tokens_only() -> None:
    full, restricted = _model(), _model()
    use_id_token_head(restricted, ID_TOKENS)
    batch = _batch()
    with torch.no_grad():
        logits = _logits(full, batch)[..., ID_TOKENS]
        log_probs = torch.log_softmax(logits, dim=-1)
        labels = batch["labels"]
        kept = labels != -100
        columns = torch.tensor([ID_TOKENS.index(int(token)) for token in labels[kept]])
        expected = -log_probs[kept][torch.arange(len(columns)), columns].mean()
        got = seq2seq_loss(restricted, batch)
        whole_vocabulary = seq2seq_loss(full, batch)
    torch.testing.assert_close(got, expected)
    assert float(got) < float(whole_vocabulary)  # the same logits, normalised over fewer tokens


def test_beam_search_scores_are_log_probabilities_over_the_id_tokens() -> None:
    model = _model()
    use_id_token_head(model, ID_TOKENS)
    trie = ItemTrie.build(ITEMS, EOS, PAD)
    batch = _batch()
    items, scores = constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie,
                                            beam_width=3, num_results=3, runtime=cpu_runtime())
    assert sorted(items[0].tolist()) == [0, 1, 2]
    with torch.no_grad():
        for row in range(len(items)):
            for item, score in zip(items[row].tolist(), scores[row].tolist()):
                labels = torch.tensor([ITEMS[item]])
                logits = _logits(model, {"input_ids": batch["input_ids"][row:row + 1],
                                         "attention_mask": batch["attention_mask"][row:row + 1], "labels": labels})
                log_probs = torch.log_softmax(logits[0], dim=-1)
                columns = output_columns(model, labels[0])
                assert score == pytest.approx(float(log_probs[torch.arange(3), columns].sum()), abs=1e-4)


def test_a_token_outside_the_head_is_refused() -> None:
    model = _model()
    use_id_token_head(model, ID_TOKENS)
    with pytest.raises(BenchError, match="token 7 is not one of the 6 ID tokens"):
        output_columns(model, torch.tensor([40, 7]))
    with pytest.raises(BenchError, match="token ids in"):
        IDTokenHead(model.shared.weight, [VOCAB], VOCAB)


def test_a_recommender_with_the_id_token_head_trains_and_ranks_valid_items(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, output_head="id_tokens")
    method, data = fitted(TokenIds, tmp_path, config)
    assert method.metadata()["output_tokens"] == 4 + 5 + 1  # the 20 items' ID tokens and EOS
    ranking = method.rank(np.arange(data.split.n_users), data.split.histories("test"), 5)
    assert ranking.min() >= 0 and ranking.max() < data.n_items
    assert all(len(set(row)) == 5 for row in ranking.tolist())
    assert "output_tokens" not in fitted(TokenIds, tmp_path / "full")[0].metadata()
