"""Engine tests share one thread setting and one tiny T5 (random weights, 30-token vocabulary)."""

from __future__ import annotations

import pytest
import torch

EOS, PAD, VOCAB = 1, 0, 30


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def tiny_t5(seed: int):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4,
        dropout_rate=0.0, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
        # A larger init spreads the log-probs, so no two items tie by accident.
        initializer_factor=4.0,
    )
    return T5ForConditionalGeneration(config)
