"""What UniSRec pre-trains on: the fusion of several source datasets (Sec. 3.3.2,
multi-domain pre-training), sampled as IDGenRec's zero-shot foundation is.

Each source is prepared, split by leave-one-out, and down-sampled to ``users_per_dataset``
users with the same draw as IDGenRec's foundation (:func:`methods.idgenrec.corpus.sample_users`
with seed ``seed + position``), so a UniSRec and an IDGenRec zero-shot run with the same
sources, user count and seed train on the same sequences. The fusion is one
:class:`~bench.data.dataset.Dataset` whose items are the sampled users' items, named
``<source>:<item>``; leave-one-out over it gives the training parts (what pre-training
reads) and the sources' validation items (what pre-training is model-selected on).
Nothing of the evaluated dataset is read here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.data.dataset import Dataset, build_dataset
from bench.data.split import Split, leave_one_out
from methods.idgenrec.corpus import check_foundation_sources, sample_users


@dataclasses.dataclass(frozen=True)
class SourceCorpus:
    dataset: Dataset  # the fusion of the sampled sources
    split: Split  # leave-one-out over it
    sources: dict[str, dict[str, int]]  # source name -> {"users": ..., "items": ...}


def source_corpus(names: Sequence[str], data_dirs: Sequence[str], evaluated_on: str, users_per_dataset: int,
                  seed: int) -> SourceCorpus:
    from bench.data.prepare import prepare_dataset

    check_foundation_sources(names, data_dirs, evaluated_on)
    sequences: list[tuple[str, list[str]]] = []
    item_text: dict[str, str] = {}
    sources: dict[str, dict[str, int]] = {}
    for position, name in enumerate(names):
        dataset = prepare_dataset(name, Path(data_dirs[position]) if data_dirs else None)
        users = sample_users(dataset.n_users, users_per_dataset, seed + position)
        items: set[int] = set()
        for user in users.tolist():
            sequence = dataset.sequences[user].tolist()
            items.update(sequence)
            sequences.append((f"{name}:{dataset.user_ids[user]}", [f"{name}:{dataset.item_ids[i]}" for i in sequence]))
        item_text.update({f"{name}:{dataset.item_ids[i]}": dataset.item_text[i] for i in items})
        sources[name] = {"users": int(len(users)), "items": len(items)}
    fused = build_dataset("+".join(names), sequences, item_text, {item: [] for item in item_text},
                          {"format": "unisrec-sources", "sources": sources})
    return SourceCorpus(dataset=fused, split=leave_one_out(fused), sources=sources)


def word_dropped(texts: Sequence[str], ratio: float, seed: int) -> list[str]:
    """Each text with every word dropped with probability ``ratio``, once per item (the
    official preprocessing stores one such copy: its word-drop augmentation, Sec. 3.3.2)."""
    rng = np.random.default_rng([seed, 7])
    dropped = []
    for text in texts:
        words = text.split(" ")
        kept = rng.random(len(words)) >= ratio
        dropped.append(" ".join(word for word, keep in zip(words, kept) if keep))
    return dropped
