"""IDGenRec's generator phase (Sec. 2.5): the ID generator trained through the frozen
recommender on soft IDs by the engine's loop (:func:`bench.engine.training.train_model`), then
every item's (and user's) ID written anew."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from bench.engine.batching import SequentialExamples
from bench.engine.prompt_encoding import USER_SLOT
from bench.engine.prompts import sample_template_indices
from bench.engine.training import TrainingConfig, train_model
from bench.method import RunContext
from methods.idgenrec.config import IDGenRecConfig, TrainingPhase
from methods.idgenrec.corpus import Corpus
from methods.idgenrec.prompting import PromptWriter
from methods.idgenrec.soft_ids import SoftBatch, frozen, soft_id_loss
from methods.idgenrec.state import ScheduleState

if TYPE_CHECKING:
    import torch
    from transformers import T5ForConditionalGeneration

    from methods.idgenrec.generator import IDGenerator

# The draws of a generator phase's epoch: (seed, phase, epoch, stream); a recommender phase's
# templates use stream 0.
GENERATOR_STREAM = 1
# Each phase's dropout stream starts from the run's seed + this + the phase's index, apart from
# the recommender phases' (which start from the run's seed).
DROPOUT_SEED_OFFSET = 1000


def generator_phase(generator: "IDGenerator", recommender: "T5ForConditionalGeneration", prompts: PromptWriter,
                    phase: TrainingPhase, corpus: Corpus, state: ScheduleState, config: IDGenRecConfig,
                    context: RunContext, checkpoint_dir: Path, progress: Callable[[str], Any]) -> dict[str, Any]:
    """A generator phase: train the generator through the frozen recommender (soft IDs; a
    checkpoint per epoch in ``checkpoint_dir``, so a killed phase resumes at its last epoch),
    then regenerate the IDs of all items (and users) into ``state``; the phase's log entry."""
    task = SoftIDTask(generator, recommender, prompts, corpus, state, phase.index, context.seed)
    with frozen(recommender):
        report = train_model(generator.model, task, phase_training(config), checkpoint_dir, context,
                             description=f"round {phase.round}/{config.rounds} ID generator",
                             seed=context.seed + DROPOUT_SEED_OFFSET + phase.index, shuffle=False,
                             fused_optimizer=False, cheap_dropout_masks=False)
    previous = state.item_ids
    unique = generator.unique_ids(corpus.item_texts, progress(f"round {phase.round} item IDs"))
    state.item_ids, state.item_stats = unique.ids, unique.stats.to_dict()
    entry = {"examples": report.examples_per_epoch * report.epochs,
             "mean_loss": round(float(np.mean(task.losses)), 6) if task.losses else None,
             "item_ids_changed": int(sum(a != b for a, b in zip(previous, unique.ids))),
             "item_id_stats": unique.stats.to_dict()}
    if config.with_users:
        users = generator.unique_ids(corpus.user_texts, progress(f"round {phase.round} user IDs"))
        entry["user_ids_changed"] = int(sum(a != b for a, b in zip(state.user_ids, users.ids)))
        state.user_ids, state.user_stats = users.ids, users.stats.to_dict()
    return entry


def phase_training(config: IDGenRecConfig) -> TrainingConfig:
    """The loop's options for a generator phase: AdamW at the constant
    ``generator_phase_learning_rate``, no warm-up, no weight decay, ``generator_epochs`` epochs of
    ``batch_size`` examples, clipped at ``max_grad_norm``, no validation (the phase is selected
    together with the recommender phase after it)."""
    return TrainingConfig(learning_rate=config.generator_phase_learning_rate, lr_schedule="constant",
                          warmup_ratio=0.0, warmup_steps=0, weight_decay=0.0, epochs=config.generator_epochs,
                          batch_size=config.batch_size, gradient_accumulation=1, max_grad_norm=config.max_grad_norm,
                          length_bucketing=False, eval_every=0, device=config.device, precision=config.precision,
                          threads=config.threads)


class SoftIDTask:
    """A generator phase as a task of the engine's loop. An epoch is ``generator_phase_examples``
    training examples (0: all), in an order and with templates drawn from (seed, phase, epoch),
    which the loop cuts into batches as they come; a batch is their prompts with the span of
    every ID they write (:func:`soft_batch`); the loss is the frozen recommender's through the
    generator's soft IDs (:func:`~methods.idgenrec.soft_ids.soft_id_loss`). The model the loop
    trains is ``generator.model`` (one process, so never wrapped)."""

    example_length = None  # batches are cut in the drawn order, never by length

    def __init__(self, generator: "IDGenerator", recommender: "T5ForConditionalGeneration", prompts: PromptWriter,
                 corpus: Corpus, state: ScheduleState, phase_index: int, seed: int) -> None:
        config = prompts.config
        self.generator, self.recommender, self.prompts, self.corpus = generator, recommender, prompts, corpus
        self.phase_examples = config.generator_phase_examples
        self.phase_index, self.seed = phase_index, seed
        self.item_tokens = prompts.token_lists(state.item_ids)
        self.user_tokens = prompts.token_lists(state.user_ids) if config.with_users else None
        self.positions = prompts.positions(corpus)
        self.losses: list[float] = []  # every batch's trained in this process: the phase's mean loss

    def examples_for_epoch(self, epoch: int) -> list[tuple[int, int]]:
        """(example, template) pairs: examples index ``prompts.positions(corpus)``."""
        rng = np.random.default_rng([self.seed, self.phase_index, epoch, GENERATOR_STREAM])
        order = rng.permutation(len(self.positions))
        if self.phase_examples:
            order = order[:self.phase_examples]
        templates = sample_template_indices(len(order), rng)
        return list(zip(order.tolist(), templates.tolist()))

    def collate(self, examples: Sequence[tuple[int, int]]) -> SoftBatch:
        return soft_batch(self.prompts, self.corpus, self.positions, examples, self.item_tokens, self.user_tokens,
                          self.prompts.tokenizer.eos_token_id)

    def loss(self, model: Any, batch: SoftBatch) -> "torch.Tensor":
        import torch

        # soft_id_loss runs the two models under the runtime's autocast and keeps the soft
        # embeddings between them in fp32, as the input embeddings they are written into; the
        # loop's autocast around it all would make them bf16/fp16.
        with torch.autocast(self.generator.runtime.device.type, enabled=False):
            loss = soft_id_loss(self.generator, self.recommender, batch, self.prompts.tokenizer.pad_token_id)
        self.losses.append(float(loss.detach()))
        return loss


def soft_batch(writer: PromptWriter, corpus: Corpus, positions: SequentialExamples,
               examples: Sequence[tuple[int, int]], item_tokens: list[list[int]], user_tokens: list[list[int]] | None,
               eos: int) -> SoftBatch:
    """Prompts of ``examples`` ((example, template) pairs) with the span of every ID they write,
    the text each span's ID is generated from, and the targets: what the soft-ID loss needs
    (:mod:`methods.idgenrec.soft_ids`)."""
    config = writer.config
    prompts, span_entities, targets = [], [], []
    entity_text: dict[Any, str] = {}
    entity_tokens: dict[Any, list[int]] = {}
    for example, template in examples:
        user, position = int(positions.users[example]), int(positions.positions[example])
        sequence = corpus.train_sequences[user]
        history = sequence[max(0, position - config.max_history):position]
        prompt = writer.prompt(template, history, item_tokens, user_tokens[user] if user_tokens else None)
        written = history[-config.max_history:].tolist() if config.with_items else []
        entities = []
        for span in prompt.spans:
            if span.slot == USER_SLOT:
                entity = ("user", user)
                entity_text[entity], entity_tokens[entity] = corpus.user_texts[user], user_tokens[user]
            else:
                item = written[span.slot]
                entity = ("item", item)
                entity_text[entity], entity_tokens[entity] = corpus.item_texts[item], item_tokens[item]
            entities.append(entity)
        prompts.append(prompt)
        span_entities.append(entities)
        targets.append(item_tokens[sequence[position]] + [eos])
    return SoftBatch(prompts, span_entities, entity_text, entity_tokens, targets)
