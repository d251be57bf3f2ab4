"""IDGenRec's generator phase (Sec. 2.5): the ID generator trained through the frozen
recommender on soft IDs, then every item's (and user's) ID written anew."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bench.engine.batching import SequentialExamples
from bench.engine.prompt_encoding import USER_SLOT
from bench.engine.prompts import sample_template_indices
from bench.method import RunContext
from methods.idgenrec.config import IDGenRecConfig, TrainingPhase
from methods.idgenrec.corpus import Corpus
from methods.idgenrec.prompting import PromptWriter
from methods.idgenrec.soft_ids import SoftBatch, frozen, soft_id_loss
from methods.idgenrec.state import ScheduleState

if TYPE_CHECKING:
    from transformers import T5ForConditionalGeneration

    from methods.idgenrec.generator import IDGenerator


def generator_phase(generator: "IDGenerator", recommender: "T5ForConditionalGeneration", prompts: PromptWriter,
                    phase: TrainingPhase, corpus: Corpus, state: ScheduleState, config: IDGenRecConfig,
                    context: RunContext, progress: Callable[[str], Any]) -> dict[str, Any]:
    """A generator phase: train the generator through the frozen recommender (soft IDs), then
    regenerate the IDs of all items (and users) into ``state``; the phase's log entry."""
    import torch

    item_tokens = prompts.token_lists(state.item_ids)
    user_tokens = prompts.token_lists(state.user_ids) if config.with_users else None
    positions = prompts.positions(corpus)
    eos, pad = prompts.tokenizer.eos_token_id, prompts.tokenizer.pad_token_id
    torch.manual_seed(context.seed + 1000 + phase.index)
    optimizer = torch.optim.AdamW(generator.model.parameters(), lr=config.generator_phase_learning_rate,
                                  weight_decay=0.0)
    losses = []
    generator.model.train()
    with frozen(recommender):
        for epoch in range(config.generator_epochs):
            rng = np.random.default_rng([context.seed, phase.index, epoch, 1])
            order = rng.permutation(len(positions))
            if config.generator_phase_examples:
                order = order[:config.generator_phase_examples]
            templates = sample_template_indices(len(order), rng)
            starts = range(0, len(order), config.batch_size)
            bar = context.progress(starts, desc=f"round {phase.round}/{config.rounds} ID generator "
                                                f"epoch {epoch + 1}/{config.generator_epochs}", unit="batch")
            for start in bar:
                batch = soft_batch(prompts, corpus, positions, order[start:start + config.batch_size],
                                   templates[start:start + config.batch_size], item_tokens, user_tokens, eos)
                loss = soft_id_loss(generator, recommender, batch, pad)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(generator.model.parameters(), config.max_grad_norm)
                optimizer.step()
                losses.append(float(loss.detach()))
    generator.model.eval()
    previous = state.item_ids
    unique = generator.unique_ids(corpus.item_texts, progress(f"round {phase.round} item IDs"))
    state.item_ids, state.item_stats = unique.ids, unique.stats.to_dict()
    entry = {"examples": int(len(order) * config.generator_epochs),
             "mean_loss": round(float(np.mean(losses)), 6) if losses else None,
             "item_ids_changed": int(sum(a != b for a, b in zip(previous, unique.ids))),
             "item_id_stats": unique.stats.to_dict()}
    if config.with_users:
        users = generator.unique_ids(corpus.user_texts, progress(f"round {phase.round} user IDs"))
        entry["user_ids_changed"] = int(sum(a != b for a, b in zip(state.user_ids, users.ids)))
        state.user_ids, state.user_stats = users.ids, users.stats.to_dict()
    return entry


def soft_batch(writer: PromptWriter, corpus: Corpus, positions: SequentialExamples, examples: np.ndarray,
               templates: np.ndarray, item_tokens: list[list[int]], user_tokens: list[list[int]] | None,
               eos: int) -> SoftBatch:
    """Prompts of ``examples`` with the span of every ID they write, the text each span's ID is
    generated from, and the targets: what the soft-ID loss needs (:mod:`methods.idgenrec.soft_ids`)."""
    config = writer.config
    prompts, span_entities, targets = [], [], []
    entity_text: dict[Any, str] = {}
    entity_tokens: dict[Any, list[int]] = {}
    for example, template in zip(examples.tolist(), templates.tolist()):
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
