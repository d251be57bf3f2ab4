"""Training the ID generator through the frozen recommender (IDGenRec Sec. 2.5).

Generated IDs are discrete, so no gradient reaches the generator through the tokens it
writes. IDGenRec's way round: for each ID in a prompt, run the generator teacher-forced on
that ID's own tokens, turn its output logits at each position into a distribution over
the vocabulary, and put the distribution's average of the recommender's input embeddings
at that token's place in the prompt. The recommender reads the prompt as usual and its
loss on the target item's (hard) ID flows back through those soft embeddings into the
generator. The recommender's parameters are frozen: they receive no gradient.

This works because the two models share one vocabulary (the ``cpu`` profile trains one
tokenizer for both; the ``paper`` profile's generator is a fine-tuned t5-small, whose
vocabulary is t5-small's).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Hashable, Iterator, Sequence

from bench.engine.prompt_encoding import EncodedPrompt, pad_token_lists

if TYPE_CHECKING:
    import torch

    from methods.idgenrec.generator import IDGenerator

IGNORE_INDEX = -100


@dataclasses.dataclass(frozen=True)
class SoftBatch:
    """One batch of the generator phase.

    ``prompts[b]`` is an encoded prompt whose ``spans[j]`` holds the ID of entity
    ``span_entities[b][j]`` (an item or a user; any hashable key). ``entity_text[e]`` is what
    the generator reads for entity ``e`` and ``entity_tokens[e]`` the tokens of its current
    ID (exactly the tokens at its spans). ``targets[b]`` are the target ID's tokens, EOS
    included.
    """

    prompts: Sequence[EncodedPrompt]
    span_entities: Sequence[Sequence[Hashable]]
    entity_text: dict[Hashable, str]
    entity_tokens: dict[Hashable, Sequence[int]]
    targets: Sequence[Sequence[int]]


@contextlib.contextmanager
def frozen(model) -> Iterator[None]:
    """``model`` without gradients (and in eval mode) for the duration."""
    flags = [parameter.requires_grad for parameter in model.parameters()]
    was_training = model.training
    model.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)
        model.train(was_training)


def soft_id_loss(generator: "IDGenerator", recommender, batch: SoftBatch, pad_token_id: int) -> "torch.Tensor":
    """The recommender's loss on ``batch.targets`` with every ID span replaced by the
    generator's probability-weighted embeddings (differentiable w.r.t. the generator).
    Both models run on the generator's runtime (the run's device, under its precision's autocast)."""
    import torch

    runtime = generator.runtime
    runtime.place(generator.model)
    runtime.place(recommender)
    device = runtime.device
    entities = list(dict.fromkeys(entity for row in batch.span_entities for entity in row))
    index = {entity: position for position, entity in enumerate(entities)}
    embeddings = recommender.get_input_embeddings().weight  # [vocab, d]
    eos = generator.tokenizer.eos_token_id

    if entities:
        encoded = runtime.to_device(generator.encode([batch.entity_text[entity] for entity in entities]))
        id_tokens = [list(batch.entity_tokens[entity]) for entity in entities]
        labels, label_mask = pad_token_lists([tokens + [eos] for tokens in id_tokens], pad_token_id)
        labels[label_mask == 0] = IGNORE_INDEX
        with runtime.autocast():
            logits = generator.model(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask,
                                     labels=runtime.to_device(labels)).logits  # [entities, length, generator vocab]
        if logits.shape[-1] < embeddings.shape[0]:
            raise ValueError(f"the generator's vocabulary ({logits.shape[-1]}) is smaller than the "
                             f"recommender's ({embeddings.shape[0]}); the two must share one vocabulary")
        probabilities = torch.softmax(logits[..., :embeddings.shape[0]].float(), dim=-1)
        soft = probabilities @ embeddings  # [entities, length, d]

    input_ids, attention_mask = runtime.to_device(
        pad_token_lists([prompt.input_ids for prompt in batch.prompts], pad_token_id))
    inputs_embeds = embeddings[input_ids]
    rows, positions, sources, offsets = [], [], [], []
    for row, (prompt, row_entities) in enumerate(zip(batch.prompts, batch.span_entities)):
        if len(prompt.spans) != len(row_entities):
            raise ValueError(f"prompt {row} has {len(prompt.spans)} ID spans but {len(row_entities)} entities")
        for span, entity in zip(prompt.spans, row_entities):
            length = span.end - span.start
            if length != len(batch.entity_tokens[entity]):
                raise ValueError(f"prompt {row}: span of {length} tokens for an ID of "
                                 f"{len(batch.entity_tokens[entity])} tokens")
            rows.extend([row] * length)
            positions.extend(range(span.start, span.end))
            sources.extend([index[entity]] * length)
            offsets.extend(range(length))
    if rows:
        inputs_embeds = inputs_embeds.index_put(
            (torch.as_tensor(rows, device=device), torch.as_tensor(positions, device=device)),
            soft[torch.as_tensor(sources, device=device), torch.as_tensor(offsets, device=device)])
    labels, label_mask = pad_token_lists(batch.targets, pad_token_id)
    labels[label_mask == 0] = IGNORE_INDEX
    with runtime.autocast():
        return recommender(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                           labels=runtime.to_device(labels)).loss
