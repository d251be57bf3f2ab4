"""The T5 backbone and the options every T5-based method shares.

Method configs inherit :class:`T5EngineConfig` and add their own fields. Its defaults are
the ``paper`` values of P5/IDGenRec (pre-trained ``t5-small``, learning rate 1e-3, history
of 20 items, beam of 20); the ``cpu`` profile trains a much smaller T5 from scratch and
sizes it with the fields whose help starts "cpu profile", which the paper profile ignores.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

from bench.config import AT_LEAST_ONE, BELOW_ONE, option
from bench.engine.training import TrainingConfig
from bench.errors import BenchError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration



@dataclasses.dataclass(frozen=True)
class OutputHeadConfig:
    """The decoder's output layer, for methods whose every target is an item ID."""

    output_head: Literal["vocabulary", "id_tokens"] = option(
        "vocabulary", "the decoder's output layer: vocabulary: T5's, a softmax over every token; id_tokens: "
                      "only the tokens the items' IDs hold and EOS (bench/engine/output_head.py), in training "
                      "and in the beam search, with the same tied weights", omitted_at_default=True)


@dataclasses.dataclass(frozen=True)
class T5EngineConfig(TrainingConfig):
    """The training loop's options (:class:`~bench.engine.training.TrainingConfig`) and the T5's."""

    backbone: str = option("t5-small", "paper profile: pre-trained T5 checkpoint (hub name or local folder)")
    d_model: int = option(128, "cpu profile: hidden size of the T5 trained from scratch", range=AT_LEAST_ONE)
    d_ff: int = option(512, "cpu profile: feed-forward size", range=AT_LEAST_ONE)
    num_layers: int = option(2, "cpu profile: encoder layers (the decoder has as many)", range=AT_LEAST_ONE)
    num_heads: int = option(4, "cpu profile: attention heads", range=AT_LEAST_ONE)
    d_kv: int = option(32, "cpu profile: size of each attention head", range=AT_LEAST_ONE)
    dropout_rate: float = option(0.1, "cpu profile: dropout rate of the T5 trained from scratch (T5's own default)",
                                 range=BELOW_ONE, omitted_at_default=True)
    vocab_size: int = option(8000, "cpu profile: target size of the SentencePiece vocabulary trained on the "
                                       "dataset's text (smaller if the text does not support it)", range=AT_LEAST_ONE)
    max_history: int = option(20, "most recent history items written into a prompt", range=AT_LEAST_ONE)
    with_user_id: bool = option(False, "write the user's ID into the prompt (P5 does; IDGenRec reports both)")
    last_position_only: bool = option(False, "train on the last training position of each user only, instead of "
                                             "every position t >= 1 (P5/IDGenRec data augmentation)")
    beam_width: int = option(20, "beams of the constrained beam search (at least the ranking length k)",
                             range=AT_LEAST_ONE)


def count_parameters(model: Any) -> int:
    return int(sum(parameter.numel() for parameter in model.parameters()))


def load_pretrained_model(name_or_path: str, offline: bool | None = None) -> "T5ForConditionalGeneration":
    """A pre-trained T5: a local folder, the Hugging Face cache, or the hub unless ``offline``."""
    from transformers import T5ForConditionalGeneration

    from bench.engine.hub import load_cached_or_hub

    return load_cached_or_hub(lambda local_only: T5ForConditionalGeneration.from_pretrained(
        name_or_path, local_files_only=local_only), name_or_path, "the model of checkpoint", offline)


def build_small_model(config: T5EngineConfig, vocab_size: int, seed: int) -> "T5ForConditionalGeneration":
    """A randomly initialised T5 of the cpu-profile sizes; the same seed gives the same weights."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from bench.engine.tokenizer import EOS_ID, PAD_ID

    t5_config = T5Config(
        vocab_size=vocab_size, d_model=config.d_model, d_ff=config.d_ff, d_kv=config.d_kv,
        num_layers=config.num_layers, num_decoder_layers=config.num_layers,
        num_heads=config.num_heads, dropout_rate=config.dropout_rate, feed_forward_proj="relu",
        tie_word_embeddings=True,
        # T5 starts decoding from the pad token.
        pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=PAD_ID)
    # Initialise under a forked generator so building a model leaves the caller's RNG alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return T5ForConditionalGeneration(t5_config)


def build_model(config: T5EngineConfig, profile: str, tokenizer: "PreTrainedTokenizerBase",
                seed: int) -> "T5ForConditionalGeneration":
    """``paper``: the pre-trained backbone; ``cpu``: a small T5 from scratch. Embeddings grow
    to cover tokens added to the tokenizer (pre-trained T5 already has spare rows: its
    embedding table (32128) is larger than its vocabulary (32100), so it is never shrunk)."""
    if profile == "paper":
        model = load_pretrained_model(config.backbone)
    elif profile == "cpu":
        model = build_small_model(config, len(tokenizer), seed)
    else:
        raise BenchError(f"unknown profile '{profile}' for the T5 engine; known: cpu, paper")
    resize_embeddings(model, len(tokenizer), seed)
    return model


def resize_embeddings(model: Any, vocab_size: int, seed: int) -> None:
    """Give every token of the tokenizer an embedding row; new rows are drawn with ``seed``."""
    import torch

    if vocab_size > model.get_input_embeddings().num_embeddings:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.resize_token_embeddings(vocab_size, mean_resizing=False)
