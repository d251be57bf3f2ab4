"""An output layer over the tokens item IDs are made of, instead of the whole vocabulary.

When every target is an item ID (P5's schemes, TIGER's codes), the decoder never has to
predict a prompt word, and the item trie says which tokens an ID can hold. T5's output layer
scores every token of the vocabulary at every step; :class:`IDTokenHead` scores only the
trie's tokens (and EOS), with the same tied weights, so the softmax of training and of the
beam search runs over those tokens alone. On the cpu profile's P5-CID (8,450 tokens, 451 in
IDs) the full layer and its normaliser held most of a validation's time.

Logits then have one column per ID token, in ascending token order: :func:`output_columns`
maps token ids to columns, and :func:`seq2seq_loss` gives the model its labels as columns
while the decoder still reads the real tokens. A model with T5's own layer goes through both
unchanged. The head keeps T5's weight name (``lm_head.weight``), so checkpoints load either way.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from bench.errors import BenchError

IGNORE_INDEX = -100  # label positions the loss skips (padding), transformers' convention


class IDTokenHead(torch.nn.Module):
    """T5's output layer restricted to ``token_ids``: logits ``[..., len(token_ids)]``."""

    def __init__(self, weight: torch.nn.Parameter, token_ids: Sequence[int], vocab_size: int) -> None:
        super().__init__()
        ids = sorted(set(int(token) for token in token_ids))
        if not ids or ids[0] < 0 or ids[-1] >= vocab_size:
            raise BenchError(f"an ID-token output layer needs token ids in [0, {vocab_size}), got "
                             f"{ids[:1] + ids[-1:] if ids else 'none'}")
        self.weight = weight  # the same parameter as T5's layer (tied to the input embeddings)
        self.vocab_size = vocab_size
        self.register_buffer("token_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        columns = torch.full((vocab_size,), -1, dtype=torch.long)
        columns[self.token_ids] = torch.arange(len(ids))
        self.register_buffer("columns", columns, persistent=False)  # token id -> column (-1: not an ID token)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden, self.weight.index_select(0, self.token_ids))


def use_id_token_head(model: Any, token_ids: Sequence[int]) -> IDTokenHead:
    """Replace ``model``'s output layer by one over ``token_ids`` (its weights stay shared)."""
    head = IDTokenHead(model.lm_head.weight, token_ids, model.lm_head.weight.shape[0])
    model.lm_head = head.to(model.lm_head.weight.device)
    return head


def _unwrapped(model: Any) -> Any:
    return getattr(model, "module", model)  # the model inside a DDP wrapper


def _head(model: Any) -> IDTokenHead | None:
    head = getattr(_unwrapped(model), "lm_head", None)
    return head if isinstance(head, IDTokenHead) else None


def output_facts(model: Any) -> dict[str, int]:
    """What a record says of the output layer: ``output_tokens`` with an ID-token head, else nothing."""
    head = _head(model)
    return {"output_tokens": len(head.token_ids)} if head is not None else {}


def vocabulary_size(model: Any, logits: torch.Tensor) -> int:
    """How many token ids the model's logits cover, whichever its output layer."""
    head = _head(model)
    return head.vocab_size if head is not None else logits.shape[-1]


def output_columns(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """The logit columns of ``tokens`` (on the model's device); a token outside the head's IDs
    is refused, since no column scores it."""
    head = _head(model)
    if head is None:
        return tokens
    tokens = tokens.to(head.columns.device)
    columns = head.columns[tokens]
    if bool((columns < 0).any()):
        outside = int(tokens[columns < 0][0])
        raise BenchError(f"token {outside} is not one of the {len(head.token_ids)} ID tokens the output layer scores")
    return columns


def seq2seq_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's cross-entropy on ``batch`` (``input_ids``, ``attention_mask``, ``labels``).
    With an ID-token head the labels become columns; the decoder reads the real tokens."""
    head = _head(model)
    if head is None:
        # No decoding cache: a training step never reads it, and building one per step
        # cost ~5% of a cpu-profile step.
        return model(**batch, use_cache=False).loss
    labels = batch["labels"]
    kept = labels != IGNORE_INDEX
    columns = torch.full_like(labels, IGNORE_INDEX)
    columns[kept] = output_columns(model, labels[kept])
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 decoder_input_ids=_unwrapped(model)._shift_right(labels), labels=columns, use_cache=False).loss
