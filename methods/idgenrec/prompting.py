"""How IDGenRec writes what the recommender reads, with the current IDs: token lists of IDs,
the (user, position) pairs that make training examples, and a prompt from a template, a
history and the user's ID (:mod:`bench.engine.prompt_encoding` records where each ID stands)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.engine.batching import ExamplesForEpoch, SequentialExamples
from bench.engine.prompt_encoding import PromptEncoder
from bench.engine.prompts import sample_template_indices
from methods.idgenrec.config import IDGenRecConfig
from methods.idgenrec.corpus import Corpus
from methods.idgenrec.state import ScheduleState

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclasses.dataclass(frozen=True)
class PromptWriter:
    tokenizer: "PreTrainedTokenizerBase"
    encoder: PromptEncoder
    config: IDGenRecConfig
    seed: int

    def token_lists(self, ids: list[str]) -> list[list[int]]:
        return [list(tokens) for tokens in self.tokenizer(ids, add_special_tokens=False).input_ids]

    def positions(self, corpus: Corpus) -> SequentialExamples:
        # Only its (user, position) pairs are used: which example predicts which item.
        return SequentialExamples(corpus.train_sequences, [""] * len(corpus.item_texts), self.config.max_history,
                                  self.seed, last_position_only=self.config.last_position_only)

    def prompt(self, template: int, history: np.ndarray, item_tokens: list[list[int]],
               user_tokens: list[int] | None) -> Any:
        config = self.config
        written = [item_tokens[item] for item in history.tolist()] if config.with_items else []
        return self.encoder.encode(template, written, config.max_history if config.with_items else 0, user_tokens)

    def recommender_examples(self, corpus: Corpus, state: ScheduleState, phase_index: int) -> ExamplesForEpoch:
        """A recommender phase's (prompt, target ID) token lists per epoch, written with the
        schedule's current IDs, templates drawn from (seed, phase, epoch)."""
        config = self.config
        item_tokens = self.token_lists(state.item_ids)
        user_tokens = self.token_lists(state.user_ids) if config.with_users else None
        positions = self.positions(corpus)
        eos = self.tokenizer.eos_token_id

        def examples(epoch: int) -> list[tuple[list[int], list[int]]]:
            rng = np.random.default_rng([self.seed, phase_index, epoch, 0])
            templates = sample_template_indices(len(positions), rng)
            made = []
            for user, position, template in zip(positions.users.tolist(), positions.positions.tolist(),
                                                templates.tolist()):
                sequence = corpus.train_sequences[user]
                history = sequence[max(0, position - config.max_history):position]
                prompt = self.prompt(template, history, item_tokens, user_tokens[user] if user_tokens else None)
                made.append((prompt.input_ids, item_tokens[sequence[position]] + [eos]))
            return made

        return examples
