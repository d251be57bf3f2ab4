"""What IDGenRec trains on: one dataset's training part, or a fusion of several datasets
for the foundation model of Sec. 3.5 (zero-shot evaluation on a dataset it never saw).

A :class:`Corpus` has its own item catalogue (item texts), training sequences over it,
when user IDs are on, the text each training user's ID is generated from, and the split
that model selection ranks (the evaluated dataset's own split, or for a foundation the
sources' validation items). The training part of a dataset is what leave-one-out leaves for
training (sequence minus its last two items); user texts are built from that part only
(``valid`` phase, see :mod:`methods.idgenrec.user_ids`), so nothing of a validation or test
target reaches them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.data.dataset import Dataset
from bench.data.split import Split, leave_one_out
from bench.errors import BenchError
from methods.idgenrec.user_ids import user_id_texts


@dataclasses.dataclass(frozen=True)
class Corpus:
    item_texts: list[str]
    item_names: list[str]  # one per item of the catalogue (error messages name items by it)
    train_sequences: list[np.ndarray]
    user_texts: list[str] | None  # per training user, or None when prompts carry no user ID
    sources: dict[str, dict[str, int]]  # dataset name -> {"users": ..., "items": ..., ...}
    split: Split  # what validation ranks: its users are the training users, its items the catalogue


def dataset_corpus(dataset: Dataset, split: Split, with_users: bool, user_max_items: int) -> Corpus:
    return Corpus(item_texts=list(dataset.item_text), item_names=list(dataset.item_ids),
                  train_sequences=list(split.train),
                  user_texts=user_id_texts(split, dataset, "valid", user_max_items) if with_users else None,
                  sources={dataset.name: {"users": split.n_users, "items": dataset.n_items}}, split=split)


def sample_users(n_users: int, limit: int, seed: int) -> np.ndarray:
    """All users, or ``limit`` of them drawn without replacement (kept in dataset order)."""
    if n_users <= limit:
        return np.arange(n_users)
    return np.sort(np.random.default_rng(seed).choice(n_users, size=limit, replace=False))


def check_foundation_sources(names: Sequence[str], data_dirs: Sequence[str], evaluated_on: str) -> None:
    """The zero-shot rules every foundation corpus (IDGenRec's, UniSRec's) obeys: never the
    evaluated dataset, one folder per source or none, and no source twice."""
    if evaluated_on in names:
        raise BenchError(f"config key 'foundation_datasets' lists '{evaluated_on}', the dataset being evaluated; "
                         "a zero-shot model must not train on it")
    if data_dirs and len(data_dirs) != len(names):
        raise BenchError(f"config key 'foundation_data_dirs' has {len(data_dirs)} entries for "
                         f"{len(names)} foundation datasets; give one per dataset or none")
    if len(set(names)) != len(names):
        raise BenchError(f"config key 'foundation_datasets' names a dataset twice: {list(names)}")


def foundation_corpus(names: Sequence[str], data_dirs: Sequence[str], evaluated_on: str, users_per_dataset: int,
                      with_users: bool, user_max_items: int, seed: int) -> Corpus:
    """The fusion of ``names``, each down-sampled to ``users_per_dataset`` users (the users
    UniSRec's sources hold: :mod:`methods.unisrec.corpus`). The catalogue is the items those
    users' training parts and validation items hold, dataset after dataset; its split
    (leave-one-out over the fusion) has the training parts and the validation items, which
    model selection ranks among that catalogue. 49% (Beauty) and 65% (Sports) of the validation
    items of 1,000 users sampled with seed 42 occur in no sampled training part, so a
    catalogue of training items only would make them certain misses. The sources' test items
    are left out: they would only be IDs to generate, never read."""
    from bench.data.prepare import prepare_dataset

    check_foundation_sources(names, data_dirs, evaluated_on)
    item_texts: list[str] = []
    item_names: list[str] = []
    sequences: list[np.ndarray] = []
    valid_items: list[np.ndarray] = []
    user_texts: list[str] = []
    sources: dict[str, dict[str, int]] = {}
    for position, name in enumerate(names):
        dataset = prepare_dataset(name, Path(data_dirs[position]) if data_dirs else None)
        split = leave_one_out(dataset)
        users = sample_users(split.n_users, users_per_dataset, seed + position)
        trained = np.concatenate([split.train[user] for user in users.tolist()])
        validated = np.concatenate([split.valid_items[user] for user in users.tolist()])
        kept = np.unique(np.concatenate([trained, validated]))
        new_index = np.full(dataset.n_items, -1, dtype=np.int64)
        new_index[kept] = np.arange(len(kept)) + len(item_texts)
        item_texts.extend(dataset.item_text[item] for item in kept.tolist())
        item_names.extend(f"{name}:{dataset.item_ids[item]}" for item in kept.tolist())
        sequences.extend(new_index[split.train[user]] for user in users.tolist())
        valid_items.extend(new_index[split.valid_items[user]] for user in users.tolist())
        if with_users:
            texts = user_id_texts(split, dataset, "valid", user_max_items)
            user_texts.extend(texts[user] for user in users.tolist())
        sources[name] = {"users": int(len(users)), "items": int(len(kept)),
                         "validation_only_items": int(len(np.setdiff1d(kept, trained)))}
    # No test phase: nothing is tested on the sources (the test items stay out of the catalogue).
    no_test = [np.zeros(0, dtype=np.int64) for _ in sequences]
    split = Split(train=sequences, valid_items=valid_items, test_items=no_test, n_items=len(item_texts),
                  facts={"foundation": "+".join(names)})
    return Corpus(item_texts, item_names, sequences, user_texts if with_users else None, sources, split)
