"""Training examples and their batches: P5-style sequential examples, the seq2seq task
over them, prompts tokenized once, and batches of similar length.

Why the pieces exist (measured on the cpu-profile P5-SID on Toys, benchmarks/README.md):
- **Tokenized once per epoch, word by word.** SentencePiece splits a text at spaces before
  it segments it, so a prompt's tokens are the concatenation of its words' tokens. The
  prompts of an epoch reuse a few thousand distinct words (item IDs, the templates'
  wording), so each word is tokenized once and a prompt is a list concatenation. The
  result is checked against the tokenizer on a sample of prompts; a tokenizer for which
  the two differ (e.g. added tokens written next to spaces) is used on whole prompts.
- **Length buckets.** A random batch of 32 prompts was 54% padding. Batches are cut from
  runs of examples sorted by length, inside chunks of a random permutation, and the
  batches are then shuffled; both draws come from (seed, epoch) only, so a resumed epoch
  sees the same batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from bench.engine.output_head import IGNORE_INDEX, seq2seq_loss
from bench.engine.prompt_encoding import pad_token_lists
from bench.engine.prompts import build_prompt, sample_template_indices

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

# (source prompt, target text), either as strings or already as token IDs (EOS-terminated).
Example = tuple[str | Sequence[int], str | Sequence[int]]
ExamplesForEpoch = Callable[[int], Sequence[Example]]

BUCKET_BATCHES = 64  # batches per length-sorted chunk: long enough runs of similar lengths
TOKENIZATION_CHECK = 256  # prompts compared with the tokenizer's own encoding
ORDER_STREAM, TEMPLATE_STREAM = 1, 0  # (seed, epoch, stream) of the random draws


class SequentialExamples:
    """P5/IDGenRec data augmentation: every position t >= 1 of a user's training sequence
    is one example, prompt(history[:t]) -> ID of item t (or only the last position)."""

    def __init__(self, train_sequences: Sequence[np.ndarray], item_identifiers: Sequence[str], max_history: int,
                 seed: int, user_identifiers: Sequence[str] | None = None, last_position_only: bool = False) -> None:
        self.sequences = train_sequences
        self.item_identifiers = item_identifiers
        self.user_identifiers = user_identifiers
        self.max_history = max_history
        self.seed = seed
        lengths = np.asarray([len(sequence) for sequence in train_sequences], dtype=np.int64)
        if last_position_only:
            users = np.flatnonzero(lengths >= 2)
            positions = lengths[users] - 1
        else:
            users = np.repeat(np.arange(len(lengths)), np.maximum(lengths - 1, 0))
            # Positions 1..len-1 of each user, laid out user after user.
            starts = np.cumsum(np.maximum(lengths - 1, 0)) - np.maximum(lengths - 1, 0)
            positions = np.arange(len(users)) - np.repeat(starts, np.maximum(lengths - 1, 0)) + 1
        self.users, self.positions = users, positions

    def __len__(self) -> int:
        return len(self.users)

    def __call__(self, epoch: int) -> list[Example]:
        # Templates depend on (seed, epoch) only, so a resumed epoch sees the same prompts.
        rng = np.random.default_rng([self.seed, epoch, TEMPLATE_STREAM])
        template_indices = sample_template_indices(len(self.users), rng)
        examples = []
        for user, position, template in zip(self.users.tolist(), self.positions.tolist(), template_indices.tolist()):
            sequence = self.sequences[user]
            history = [self.item_identifiers[item] for item in sequence[max(0, position - self.max_history):position]]
            user_id = self.user_identifiers[user] if self.user_identifiers is not None else None
            examples.append((build_prompt(history, self.max_history, template, user_id),
                             self.item_identifiers[sequence[position]]))
        return examples


class WordTokens:
    """Texts encoded from a cache of their space-separated words' tokens (EOS-terminated),
    or by the tokenizer on whole texts when :meth:`check` finds the two disagree."""

    def __init__(self, tokenizer: "PreTrainedTokenizerBase") -> None:
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self.cache: dict[str, list[int]] = {}
        self.exact: bool | None = None  # unknown until the first texts are checked

    def _by_words(self, texts: Sequence[str]) -> list[list[int]]:
        split = [text.split(" ") for text in texts]
        new = sorted({word for words in split for word in words if word not in self.cache})
        if new:
            encoded = self.tokenizer(new, add_special_tokens=False).input_ids
            self.cache.update(zip(new, (list(tokens) for tokens in encoded)))
        cache = self.cache
        return [[token for word in words for token in cache[word]] + [self.eos] for words in split]

    def check(self, texts: Sequence[str]) -> bool:
        """Whether word-by-word encoding equals the tokenizer's on (a sample of) ``texts``."""
        sample = list(texts[:TOKENIZATION_CHECK])
        whole = [list(tokens) for tokens in self.tokenizer(sample).input_ids]
        self.exact = whole == self._by_words(sample)
        return self.exact

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        if self.exact is None:
            self.check(texts)
        if self.exact:
            return self._by_words(texts)
        return [list(tokens) for tokens in self.tokenizer(list(texts)).input_ids]


class Seq2SeqTask:
    """The training task of a T5 over (source, target) examples: token-mean cross-entropy
    of the target given the source (padding ignored), as transformers' T5 computes it.

    With ``pretokenize`` (the default) string examples are tokenized once per epoch, word by
    word (:class:`WordTokens`); without it every batch is tokenized when it is built (the
    loop before the throughput work, kept for ``benchmarks/training_throughput.py``).
    Token-list examples are used as they are."""

    def __init__(self, tokenizer: "PreTrainedTokenizerBase", examples_for_epoch: ExamplesForEpoch,
                 pretokenize: bool = True) -> None:
        self.tokenizer = tokenizer
        self.source = examples_for_epoch
        self.pretokenize = pretokenize
        self.words = WordTokens(tokenizer)
        self.pad = tokenizer.pad_token_id

    def examples_for_epoch(self, epoch: int) -> Sequence[Example]:
        examples = self.source(epoch)
        if not self.pretokenize or not examples or not isinstance(examples[0][0], str):
            return examples
        sources = self.words([source for source, _ in examples])
        targets = self.words([target for _, target in examples])
        return list(zip(sources, targets))

    def example_length(self, example: Example) -> int:
        return len(example[0]) + len(example[1])

    def collate(self, examples: Sequence[Example]) -> dict[str, "torch.Tensor"]:
        if isinstance(examples[0][0], str):
            return self._tokenize(examples)
        input_ids, attention_mask = pad_token_lists([source for source, _ in examples], self.pad)
        labels, _ = pad_token_lists([target for _, target in examples], IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _tokenize(self, examples: Sequence[Example]) -> dict[str, "torch.Tensor"]:
        sources = self.tokenizer([source for source, _ in examples], padding=True, return_tensors="pt")
        targets = self.tokenizer([target for _, target in examples], padding=True, return_tensors="pt")
        labels = targets.input_ids
        labels[targets.attention_mask == 0] = IGNORE_INDEX
        return {"input_ids": sources.input_ids, "attention_mask": sources.attention_mask, "labels": labels}

    def loss(self, model: Any, batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return seq2seq_loss(model, batch)

    def describe(self) -> dict[str, Any]:
        if not self.pretokenize:
            return {"tokenization": "per batch"}
        mode = {None: "examples given as tokens", True: "once per epoch, word by word",
                False: "once per epoch, whole prompts"}[self.words.exact]
        return {"tokenization": mode}


def epoch_batches(lengths: np.ndarray | None, n_examples: int, batch_size: int, seed: int,
                  epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """The epoch's batches (indices into its examples), drawn from (seed, epoch) only.

    Without ``lengths``: consecutive slices of a random permutation. With them: the
    permutation is cut into chunks of :data:`BUCKET_BATCHES` batches, each chunk is sorted by
    length and cut into batches, and the batches are shuffled. Without ``shuffle``: consecutive
    slices of the examples in their own order (for examples whose order is already drawn;
    ``lengths`` must then be None). Either way there are ``ceil(n_examples / batch_size)``
    batches, all full but (at most) one."""
    if not shuffle:
        if lengths is not None:
            raise ValueError("length buckets reorder the examples: without shuffle they must be off")
        return [np.arange(start, min(start + batch_size, n_examples)) for start in range(0, n_examples, batch_size)]
    rng = np.random.default_rng([seed, epoch, ORDER_STREAM])
    order = rng.permutation(n_examples)
    if lengths is None:
        return [order[start:start + batch_size] for start in range(0, n_examples, batch_size)]
    chunk = batch_size * BUCKET_BATCHES
    batches = []
    for chunk_start in range(0, n_examples, chunk):
        members = order[chunk_start:chunk_start + chunk]
        members = members[np.argsort(lengths[members], kind="stable")]
        batches.extend(members[start:start + batch_size] for start in range(0, len(members), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
