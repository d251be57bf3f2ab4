"""Prompts encoded piece by piece, so that every ID's tokens sit at a known place.

:func:`bench.engine.prompts.build_prompt` writes a prompt as one string and the tokenizer
splits it as a whole; where one ID's tokens start and end is then lost (and a sub-word
piece may even join an ID to the comma after it). A method that edits the embeddings of
the IDs inside a prompt (IDGenRec trains its ID generator by putting soft ID embeddings at
those places) encodes the template's words, each ID and each separator on their own and
concatenates the token lists. An ID is then always the same tokens, the tokens the ID
generator writes, wherever it appears, and :class:`EncodedPrompt` tells where.
"""

from __future__ import annotations

import dataclasses
import string
from typing import TYPE_CHECKING, Sequence

from bench.engine.prompts import HISTORY_SEPARATOR, templates

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TokenIds = list[int]


@dataclasses.dataclass(frozen=True)
class Span:
    """Tokens ``[start, end)`` of a prompt hold an ID: the user's (``slot == -1``) or the
    ``slot``-th item of the written history (oldest first)."""

    start: int
    end: int
    slot: int


@dataclasses.dataclass(frozen=True)
class EncodedPrompt:
    input_ids: TokenIds
    spans: tuple[Span, ...]


USER_SLOT = -1


class PromptEncoder:
    """Encodes the engine's templates (:mod:`bench.engine.prompts`) from token lists."""

    def __init__(self, tokenizer: "PreTrainedTokenizerBase", with_user_id: bool) -> None:
        self.with_user_id = with_user_id
        self.eos = tokenizer.eos_token_id
        encode = lambda text: list(tokenizer(text, add_special_tokens=False).input_ids) if text.strip() else []
        self.separator = encode(HISTORY_SEPARATOR)
        # Each template as (literal tokens, field name or None) parts.
        self.templates = [[(encode(literal), field) for literal, field, _, _ in string.Formatter().parse(template)]
                          for template in templates(with_user_id)]

    def encode(self, template_index: int, history: Sequence[TokenIds], max_history: int,
               user: TokenIds | None = None) -> EncodedPrompt:
        """The prompt for the ``max_history`` most recent of ``history`` (token lists of
        item IDs, oldest first), EOS-terminated like the tokenizer's own encoding."""
        if (user is not None) != self.with_user_id:
            raise ValueError("a user ID is needed exactly when the encoder was built with_user_id")
        history = list(history)[-max_history:] if max_history > 0 else []
        tokens: TokenIds = []
        spans: list[Span] = []
        for literal, field in self.templates[template_index]:
            tokens.extend(literal)
            if field == "user":
                spans.append(Span(len(tokens), len(tokens) + len(user), USER_SLOT))
                tokens.extend(user)
            elif field == "history":
                for slot, item in enumerate(history):
                    if slot:
                        tokens.extend(self.separator)
                    spans.append(Span(len(tokens), len(tokens) + len(item), slot))
                    tokens.extend(item)
        tokens.append(self.eos)
        return EncodedPrompt(tokens, tuple(spans))


def pad_token_lists(sequences: Sequence[Sequence[int]], pad_value: int):
    """``[len(sequences), longest]`` tensor of the lists right-padded, and its 0/1 mask."""
    import torch

    longest = max((len(sequence) for sequence in sequences), default=0)
    ids = torch.full((len(sequences), longest), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = torch.as_tensor(list(sequence), dtype=torch.long)
        mask[row, :len(sequence)] = 1
    return ids, mask
