"""Diverse ID generation (IDGenRec, Tan et al. SIGIR 2024, Sec. 3.1.2 and Algorithm 1).

Every item must end with its own textual ID. The ID generator decodes ``k = 10``
candidates per item with diverse beam search (Vijayakumar et al. 2016); the item takes the
best candidate no earlier item has taken. When all ``k`` are taken the diversity penalty
λ rises by 1 (from 1 up to 10), pushing the groups further apart; when even λ = 10 gives
nothing new, the length range moves from [1, 10] to [10, 20] tokens and λ restarts at 1.

Batching. The paper walks the items one at a time. Here the walk is level by level: at
each level (length range, λ) every item still without an ID is decoded, in batches, and
the candidates are then resolved in item order (an item takes its best candidate not
taken by an earlier item, or by any item at an earlier level). Items at the first level
get exactly the paper's IDs; an item that escalates competes at its higher level with the
IDs of every item that was resolved at a lower level, including items after it in the
catalogue (the paper's walk would let it take such an ID first). The result does not
depend on the batch size, and a catalogue costs one decoding pass per level instead of
one per item.

Last resort (not in the paper, which reports no item left over): an item with no free
candidate at the last level takes its best candidate of that level followed by the
smallest number that makes it unique (" 2", " 3", ...). Such items are counted.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Sequence

from bench.errors import BenchError

# generate_fn(texts, diversity_penalty, min_length, max_length) -> candidates per text,
# best first (lengths in tokens).
GenerateFn = Callable[[Sequence[str], float, int, int], Sequence[Sequence[str]]]
Progress = Callable[..., Iterable]

PAPER_LENGTH_RANGES: tuple[tuple[int, int], ...] = ((1, 10), (10, 20))
PAPER_MAX_DIVERSITY_PENALTY = 10
LAST_RESORT_BASE = "item"  # used only when the generator wrote no usable candidate at all


@dataclasses.dataclass(frozen=True)
class Level:
    """One round of Algorithm 1: a length range (tokens) and a diversity penalty λ."""

    range_index: int
    min_length: int
    max_length: int
    diversity_penalty: float

    def label(self) -> str:
        return f"length {self.min_length}-{self.max_length}, lambda {self.diversity_penalty:g}"


@dataclasses.dataclass(frozen=True)
class DiverseIdStats:
    """Where the items found their IDs. ``needed_higher_penalty`` counts every item not
    resolved at the first level (λ = 1, first length range), so it includes the items of
    ``needed_longer_range``, which includes those of ``needed_last_resort`` (when there is
    a longer range to go through)."""

    n_items: int
    first_try: int
    needed_higher_penalty: int
    needed_longer_range: int
    needed_last_resort: int
    resolved_per_level: dict[str, int]  # Level.label() -> items, in level order
    decode_calls: int

    def to_dict(self) -> dict[str, Any]:
        share = (lambda count: round(count / self.n_items, 6)) if self.n_items else (lambda count: 0.0)
        return {
            "n_items": self.n_items, "first_try": self.first_try,
            "needed_higher_penalty": self.needed_higher_penalty,
            "needed_longer_range": self.needed_longer_range,
            "needed_last_resort": self.needed_last_resort,
            "share_needed_higher_penalty": share(self.needed_higher_penalty),
            "share_needed_longer_range": share(self.needed_longer_range),
            "share_needed_last_resort": share(self.needed_last_resort),
            "resolved_per_level": dict(self.resolved_per_level), "decode_calls": self.decode_calls,
        }


@dataclasses.dataclass(frozen=True)
class UniqueIds:
    ids: list[str]
    levels: list[int]  # per item: index into ``schedule``, len(schedule) for the last resort
    schedule: tuple[Level, ...]
    stats: DiverseIdStats


def paper_schedule(length_ranges: Sequence[tuple[int, int]] = PAPER_LENGTH_RANGES,
                   max_diversity_penalty: int = PAPER_MAX_DIVERSITY_PENALTY) -> tuple[Level, ...]:
    """The rounds of Algorithm 1 in order: λ = 1..max within each length range."""
    if max_diversity_penalty < 1:
        raise BenchError(f"max_diversity_penalty must be at least 1, got {max_diversity_penalty}")
    levels = []
    for range_index, (min_length, max_length) in enumerate(length_ranges):
        if not 1 <= min_length <= max_length:
            raise BenchError(f"ID length range [{min_length}, {max_length}] must satisfy 1 <= min <= max")
        for penalty in range(1, max_diversity_penalty + 1):
            levels.append(Level(range_index, min_length, max_length, float(penalty)))
    if not levels:
        raise BenchError("diverse ID generation needs at least one length range")
    return tuple(levels)


def canonical_id(candidate: str) -> str:
    """IDs are compared as whitespace-normalised strings (the recommender re-tokenizes them)."""
    return " ".join(str(candidate).split())


def generate_unique_ids(generate_fn: GenerateFn, texts: Sequence[str], batch_size: int = 64,
                        length_ranges: Sequence[tuple[int, int]] = PAPER_LENGTH_RANGES,
                        max_diversity_penalty: int = PAPER_MAX_DIVERSITY_PENALTY,
                        progress: Progress | None = None) -> UniqueIds:
    """One unique ID per text, by Algorithm 1 run level by level (see the module docstring).

    ``generate_fn`` must return, for each text, its candidates best first; it is called
    with at most ``batch_size`` texts at a time and never with an empty batch.
    """
    if batch_size < 1:
        raise BenchError(f"diverse ID generation: batch_size must be at least 1, got {batch_size}")
    schedule = paper_schedule(length_ranges, max_diversity_penalty)
    n_items = len(texts)
    ids: list[str | None] = [None] * n_items
    levels = [len(schedule)] * n_items
    taken: set[str] = set()
    last_candidates: dict[int, list[str]] = {}
    decode_calls = 0
    resolved_per_level: dict[str, int] = {}
    for level_index, level in enumerate(schedule):
        pending = [item for item in range(n_items) if ids[item] is None]
        if not pending:
            break
        candidates: dict[int, list[str]] = {}
        batches = [pending[start:start + batch_size] for start in range(0, len(pending), batch_size)]
        if progress is not None:
            batches = progress(batches, desc=f"IDs ({level.label()})", total=len(batches))
        for batch in batches:
            output = generate_fn([texts[item] for item in batch], level.diversity_penalty,
                                 level.min_length, level.max_length)
            decode_calls += 1
            if len(output) != len(batch):
                raise BenchError(f"diverse ID generation: generate_fn returned {len(output)} candidate lists "
                                 f"for {len(batch)} texts")
            for item, item_candidates in zip(batch, output):
                candidates[item] = [canonical_id(candidate) for candidate in item_candidates]
        resolved = 0
        # Alg. 1: uniqueness is resolved in item order; an item takes its best free candidate.
        for item in pending:
            free = next((c for c in candidates[item] if c and c not in taken), None)
            if free is None:
                continue  # Alg. 1: all k candidates taken, the item waits for the next λ
            ids[item], levels[item] = free, level_index
            taken.add(free)
            resolved += 1
        resolved_per_level[level.label()] = resolved
        last_candidates = candidates

    # Last resort (ours): number the best candidate of the last level until it is free.
    left_over = [item for item in range(n_items) if ids[item] is None]
    for item in left_over:
        usable = [c for c in last_candidates.get(item, []) if c]
        base = usable[0] if usable else LAST_RESORT_BASE
        number = 2
        while f"{base} {number}" in taken:
            number += 1
        ids[item] = f"{base} {number}"
        taken.add(ids[item])

    first_range_levels = sum(1 for level in schedule if level.range_index == 0)
    has_longer_range = first_range_levels < len(schedule)
    stats = DiverseIdStats(
        n_items=n_items,
        first_try=sum(1 for level in levels if level == 0),
        needed_higher_penalty=sum(1 for level in levels if level != 0),
        needed_longer_range=sum(1 for level in levels if level >= first_range_levels) if has_longer_range else 0,
        needed_last_resort=len(left_over),
        resolved_per_level=resolved_per_level,
        decode_calls=decode_calls,
    )
    return UniqueIds(ids=[str(identifier) for identifier in ids], levels=levels, schedule=schedule, stats=stats)
