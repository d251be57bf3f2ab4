"""Optional textual user IDs (IDGenRec Sec. 3.1: the same ID generator, fed the text of the
items in the user's history; the paper's Table 6 compares prompts with and without them).

Only the items a model may read for a phase go into the text (``Split.histories``):

- ``valid``: the training part of the sequence. Training prompts use these IDs too, since
  training reads nothing beyond the training part.
- ``test``: the training part plus the validation item, never the test item.

The official code builds each user's ID from the whole sequence, target items included,
so the ID written into a test prompt carries words of the very item to be predicted (a
leak its users reported). Here a user therefore has one ID per phase, each made from the
items visible in that phase, and each phase's IDs are made unique among users by the
same diverse ID generation as the items (Algorithm 1).
"""

from __future__ import annotations

from typing import Sequence

from bench.data.dataset import Dataset
from bench.data.split import Phase, Split
from bench.errors import BenchError
from methods.idgenrec.diverse_ids import (PAPER_LENGTH_RANGES, PAPER_MAX_DIVERSITY_PENALTY, GenerateFn,
                                          Progress, UniqueIds, generate_unique_ids)

PHASES: tuple[str, ...] = ("valid", "test")
ITEM_SEPARATOR = "; "  # keeps the generator's "key: value; key: value" plain-text format


def user_id_texts(split: Split, dataset: Dataset, phase: Phase, max_items: int = 20) -> list[str]:
    """The generator's input per user for ``phase``: the text of the ``max_items`` most
    recent visible items, oldest first (as the official code orders them)."""
    if phase not in PHASES:
        raise BenchError(f"user IDs: unknown phase '{phase}'; known: {', '.join(PHASES)}")
    if max_items < 1:
        raise BenchError(f"user IDs: max_items must be at least 1, got {max_items}")
    if split.n_items != dataset.n_items:
        raise BenchError(f"user IDs: the split has {split.n_items} items, dataset '{dataset.name}' has "
                         f"{dataset.n_items}")
    # Split.histories(phase) is the leak guard: it never holds the phase's own target.
    return [ITEM_SEPARATOR.join(dataset.item_text[item] for item in history[-max_items:].tolist())
            for history in split.histories(phase)]


def generate_user_ids(generate_fn: GenerateFn, split: Split, dataset: Dataset, phase: Phase,
                      batch_size: int = 64, max_items: int = 20,
                      length_ranges: Sequence[tuple[int, int]] = PAPER_LENGTH_RANGES,
                      max_diversity_penalty: int = PAPER_MAX_DIVERSITY_PENALTY,
                      progress: Progress | None = None) -> UniqueIds:
    """Unique user IDs for ``phase`` (``ids[u]`` is user ``u``'s), from visible items only."""
    return generate_unique_ids(generate_fn, user_id_texts(split, dataset, phase, max_items), batch_size,
                               length_ranges, max_diversity_penalty, progress)
