"""A generative recommender that needs only an item ID scheme.

P5's ID schemes (sequential, random, collaborative, ...) and many ablations differ only
in the string that names each item. A subclass of :class:`GenerativeRecommender`
implements :meth:`~GenerativeRecommender.item_identifiers`; the engine does the rest:
tokenizer and T5 per profile, the trie of the items' tokenized IDs, seq2seq training on
P5-style prompts (resumable), and ranking by beam search constrained to that trie.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from bench.engine.model import OutputHeadConfig, T5EngineConfig, build_model, count_parameters
from bench.engine.output_head import output_facts
from bench.engine.prompts import TEST_TEMPLATE, build_prompt, template_words
from bench.engine.tokenizer import build_tokenizer
from bench.engine.batching import SequentialExamples
from bench.engine.selection import validation_scorer
from bench.engine.training import TrainingReport, train_seq2seq
from bench.errors import BenchError
from bench.method import Method, TrainingData

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

    from bench.engine.trie import ItemTrie


def check_unique_identifiers(identifiers: Sequence[Any], item_names: Sequence[str], owner: str,
                             what: str = "the identifier") -> None:
    """Each item needs its own ID, or decoding one ID could not tell which item was meant."""
    first_item: dict[Any, int] = {}
    for item, identifier in enumerate(identifiers):
        other = first_item.setdefault(identifier, item)
        if other != item:
            raise BenchError(f"{owner}: items '{item_names[other]}' and '{item_names[item]}' share "
                             f"{what} {identifier!r}; item IDs must be unique")


@dataclasses.dataclass(frozen=True)
class FixedIDConfig(OutputHeadConfig, T5EngineConfig):
    """The engine's options for methods whose items keep one ID for the whole run."""


class GenerativeRecommender(Method):
    """Subclasses implement :meth:`item_identifiers`, optionally :meth:`extra_tokens` and
    :meth:`user_identifiers`; everything else is the shared T5 engine."""

    config_class: ClassVar[type] = FixedIDConfig
    output = "ranking"
    supports_candidates = True  # the beam search runs over the trie of the candidates
    # cpu: 4 epochs keep each P5 method on `demo` under a minute and above pop (collaborative
    # IDs, made of new tokens, need them: at 2 epochs p5-cid ranked like pop); long runs set
    # their own budget (benchmarks/README.md). One thread: these small models gain nothing
    # from more, and under load two threads took 3-4x the CPU time of one (measured on demo).
    # Precision auto: bf16 autocast where the CPU computes it (1.2-1.5x faster training with
    # AVX-512 BF16, with the loss of fp32 after an epoch), fp32 where bf16 would be emulated
    # (matrix multiplies 10.5x slower on average, 2.6-42.8x per shape, on an AVX2-only CPU;
    # benchmarks/README.md). Model selection on 2,000 sampled validation users: on Toys (19,412
    # users) a validation costs about a tenth of an epoch instead of one; smaller datasets use all
    # their users. The output layer scores the ID tokens only: on chronological Toys it cut
    # P5-CID's validation from about 31 to 11 s and its time to the validation target 2.8x on
    # top of the data settings (benchmarks/README.md, time to quality); on demo every P5 scheme
    # but RID ranked as well or better (HR@10 0.26 against 0.28 there, 400 users).
    profiles = {"cpu": {"epochs": 4, "threads": 1, "precision": "auto", "validation_users": 2000,
                        "output_head": "id_tokens"}}

    @abc.abstractmethod
    def item_identifiers(self, data: TrainingData) -> list[str]:
        """One ID string per item index (``data.n_items`` of them, all distinct)."""

    def extra_tokens(self) -> list[str]:
        """Whole tokens the ID scheme needs in the vocabulary (e.g. ``<CI12>``); called
        after :meth:`item_identifiers`, so it may read what that method computed."""
        return []

    def user_identifiers(self, data: TrainingData) -> list[str]:
        """One ID string per user index, written into prompts when ``with_user_id`` is on."""
        return list(data.dataset.user_ids)

    def fit(self, data: TrainingData) -> None:
        from bench.engine.trie import ItemTrie

        config: FixedIDConfig = self.config
        context = self.context
        owner = f"method {type(self).__name__}"
        identifiers = [str(identifier) for identifier in self.item_identifiers(data)]
        if len(identifiers) != data.n_items:
            raise BenchError(f"{owner}: item_identifiers returned {len(identifiers)} IDs for {data.n_items} items")
        empty = [item for item, identifier in enumerate(identifiers) if not identifier.strip()]
        if empty:
            raise BenchError(f"{owner}: item '{data.dataset.item_ids[empty[0]]}' has an empty ID")
        check_unique_identifiers(identifiers, data.dataset.item_ids, owner)
        users = [str(user) for user in self.user_identifiers(data)] if config.with_user_id else None
        if users is not None and len(users) != data.split.n_users:
            raise BenchError(f"{owner}: user_identifiers returned {len(users)} IDs for {data.split.n_users} users")

        tokenizer = self.build_tokenizer(data, identifiers, users)
        model = self.build_model(tokenizer)
        token_sequences = tokenizer(identifiers).input_ids  # EOS-terminated, as the targets in training
        check_unique_identifiers([tuple(tokens) for tokens in token_sequences], data.dataset.item_ids, owner,
                                 what="the token sequence")
        self.trie: ItemTrie = ItemTrie.build(token_sequences, tokenizer.eos_token_id, tokenizer.pad_token_id)
        if config.output_head == "id_tokens":
            from bench.engine.output_head import use_id_token_head

            use_id_token_head(model, [token for tokens in token_sequences for token in tokens])
        # rank() reads these, so validation during training ranks with the model being trained.
        self.tokenizer, self.model = tokenizer, model
        self.identifiers, self.users = identifiers, users
        examples = self.training_examples(data, identifiers, users)
        validate = validation_scorer(self, data.split, config.validation_users, context)
        self.report: TrainingReport = train_seq2seq(model, tokenizer, examples, config,
                                                    context.work_dir / "checkpoints", context, validate=validate)

    # Hooks for schemes that differ in more than the ID string (TIGER: code tokens only,
    # no worded prompt, a T5 from scratch in every profile).
    def build_tokenizer(self, data: TrainingData, identifiers: list[str],
                        users: list[str] | None) -> "PreTrainedTokenizerBase":
        """The profile's tokenizer. The cpu one learns its pieces from what it will read: item
        text, the IDs, the prompts' wording (and user IDs when prompts carry them)."""
        config, context = self.config, self.context
        corpus = list(data.dataset.item_text) + identifiers + template_words(config.with_user_id) + (users or [])
        return build_tokenizer(context.profile, config.backbone, corpus, context.work_dir / "tokenizer",
                               config.vocab_size, context.seed, self.extra_tokens())

    def build_model(self, tokenizer: "PreTrainedTokenizerBase") -> "T5ForConditionalGeneration":
        """The profile's T5: pre-trained backbone (paper) or a small one from scratch (cpu)."""
        return build_model(self.config, self.context.profile, tokenizer, self.context.seed)

    def training_examples(self, data: TrainingData, identifiers: list[str],
                          users: list[str] | None) -> SequentialExamples:
        """(prompt, target ID) pairs per epoch; they must match :meth:`prompts` at test time."""
        config = self.config
        return SequentialExamples(data.split.train, identifiers, config.max_history, self.context.seed,
                                  users, config.last_position_only)

    def prompts(self, users: np.ndarray, histories: list[np.ndarray]) -> list[str]:
        """Test prompts: the fixed template, the most recent items of each history."""
        max_history = self.config.max_history
        return [build_prompt([self.identifiers[item] for item in history[-max_history:]], max_history,
                             TEST_TEMPLATE, self.users[user] if self.users is not None else None)
                for user, history in zip(users.tolist(), histories)]

    def rank(self, users: np.ndarray, histories: list[np.ndarray], k: int,
             candidates: np.ndarray | None = None) -> np.ndarray:
        from bench.engine.beam_search import rank_items

        encoded = self.tokenizer(self.prompts(np.asarray(users), histories), padding=True, return_tensors="pt")
        return rank_items(self.model, encoded.input_ids, encoded.attention_mask, self.trie, k,
                          self.config.beam_width, candidates, runtime=self.context.runtime)

    def metadata(self) -> dict[str, Any]:
        report = self.report
        found = {
            "profile": self.context.profile,
            "parameters": count_parameters(self.model),
            "vocab_size": len(self.tokenizer),
            "extra_tokens": len(self.extra_tokens()),
            "max_id_tokens": self.trie.max_depth - 1,  # EOS not counted
            **output_facts(self.model),
            **report.record(),
        }
        if self.context.profile == "paper":
            found["backbone"] = self.config.backbone
        return found

