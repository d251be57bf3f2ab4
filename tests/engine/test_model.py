"""The T5 backbone per profile: sizes from the config, seeded init, embeddings for added tokens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from bench.engine.model import T5EngineConfig, build_model, count_parameters, load_pretrained_model
from bench.engine.tokenizer import EOS_ID, PAD_ID, add_tokens, train_cpu_tokenizer
from bench.errors import BenchError

SMALL = T5EngineConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=100)



@pytest.fixture
def tokenizer(tmp_path: Path):
    return train_cpu_tokenizer([f"item {i}, thing {i}" for i in range(30)], tmp_path, vocab_size=100, seed=0)


def test_cpu_model_is_sized_by_config_and_tokenizer(tokenizer) -> None:
    model = build_model(SMALL, "cpu", tokenizer, seed=0)
    config = model.config
    assert (config.d_model, config.d_ff, config.num_layers, config.num_decoder_layers, config.num_heads,
            config.d_kv) == (32, 64, 1, 1, 2, 16)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert (config.pad_token_id, config.eos_token_id, config.decoder_start_token_id) == (PAD_ID, EOS_ID, PAD_ID)
    manual = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert count_parameters(model) == manual


def test_dropout_rate_reaches_every_dropout_of_the_cpu_model_and_is_omitted_at_its_default(tokenizer) -> None:
    from bench.config import recorded_options

    default = build_model(SMALL, "cpu", tokenizer, seed=0)
    assert default.config.dropout_rate == 0.1
    none = build_model(dataclasses.replace(SMALL, dropout_rate=0.0), "cpu", tokenizer, seed=0)
    rates = [module.p for module in none.modules() if isinstance(module, torch.nn.Dropout)]
    rates += [module.dropout for module in none.modules() if isinstance(getattr(module, "dropout", None), float)]
    assert rates and set(rates) == {0.0}
    assert "dropout_rate" not in recorded_options(SMALL)
    assert recorded_options(dataclasses.replace(SMALL, dropout_rate=0.0))["dropout_rate"] == 0.0


def test_same_seed_same_weights_other_seed_other_weights(tokenizer) -> None:
    first, second, other = (build_model(SMALL, "cpu", tokenizer, seed=s) for s in (5, 5, 6))
    for (name, a), b, c in zip(first.named_parameters(), second.parameters(), other.parameters()):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, c) for a, c in zip(first.parameters(), other.parameters()))


def test_building_a_model_leaves_the_global_rng_alone(tokenizer) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(SMALL, "cpu", tokenizer, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_added_tokens_get_embedding_and_output_rows(tokenizer) -> None:
    add_tokens(tokenizer, ["<CI1>", "<CI2>"])
    model = build_model(SMALL, "cpu", tokenizer, seed=0)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    ids = torch.tensor([tokenizer("<CI1> <CI2>").input_ids])
    logits = model(input_ids=ids, decoder_input_ids=ids).logits
    assert logits.shape[-1] == len(tokenizer)


def test_paper_model_without_hub_raises(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="not in the local Hugging Face cache"):
        load_pretrained_model(str(tmp_path / "missing"), offline=True)


def test_unknown_profile_is_an_error(tokenizer) -> None:
    with pytest.raises(BenchError, match="unknown profile"):
        build_model(SMALL, "gpu", tokenizer, seed=0)


def test_every_config_field_has_help_and_bad_values_name_the_key() -> None:
    for field in dataclasses.fields(T5EngineConfig):
        assert field.metadata.get("help"), field.name
    with pytest.raises(BenchError, match="'epochs'"):
        T5EngineConfig(epochs=0)
    with pytest.raises(BenchError, match="'warmup_ratio'"):
        T5EngineConfig(warmup_ratio=1.5)
    assert (T5EngineConfig().learning_rate, T5EngineConfig().beam_width, T5EngineConfig().max_history) == (1e-3, 20, 20)


def test_paper_profile_loads_a_local_checkpoint_folder(tokenizer, tmp_path: Path) -> None:
    from bench.engine.tokenizer import build_tokenizer

    saved = build_model(SMALL, "cpu", tokenizer, seed=3)
    folder = tmp_path / "checkpoint"
    saved.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = dataclasses.replace(SMALL, backbone=str(folder))
    loaded_tokenizer = build_tokenizer("paper", config.backbone, [], tmp_path / "unused", 100, 0, ["<CI1>"])
    assert loaded_tokenizer("item 3").input_ids == tokenizer("item 3").input_ids
    loaded = build_model(config, "paper", loaded_tokenizer, seed=0)
    assert loaded.get_input_embeddings().num_embeddings == len(tokenizer) + 1
    for (name, a), b in zip(saved.named_parameters(), loaded.parameters()):
        assert torch.equal(a, b[:a.shape[0]]), name  # the embedding keeps its rows and gains one
