"""What IDGenRec trains on: one dataset's training part, or the fusion of source datasets
(:mod:`bench.data.fusion`) for the foundation model of Sec. 3.5 (zero-shot evaluation on a
dataset it never saw).

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
from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.data.fusion import Fusion
from bench.data.split import Split
from methods.idgenrec.user_ids import user_id_texts


@dataclasses.dataclass(frozen=True)
class Corpus:
    item_texts: list[str]
    item_names: list[str]  # one per item of the catalogue (error messages name items by it)
    train_sequences: list[np.ndarray]
    user_texts: list[str] | None  # per training user, or None when prompts carry no user ID
    sources: dict[str, dict[str, Any]]  # dataset name -> {"users": ..., "items": ..., ...}
    split: Split  # what validation ranks: its users are the training users, its items the catalogue


def dataset_corpus(dataset: Dataset, split: Split, with_users: bool, user_max_items: int) -> Corpus:
    return Corpus(item_texts=list(dataset.item_text), item_names=list(dataset.item_ids),
                  train_sequences=list(split.train),
                  user_texts=user_id_texts(split, dataset, "valid", user_max_items) if with_users else None,
                  sources={dataset.name: {"users": split.n_users, "items": dataset.n_items}}, split=split)


def fusion_corpus(fusion: Fusion, with_users: bool, user_max_items: int) -> Corpus:
    """The foundation of Sec. 3.5: the fused sources (:func:`bench.data.fusion.build_fusion`),
    model-selected on their validation items ranked among the fused catalogue. User texts come
    from each user's training part only, as on a single dataset."""
    return Corpus(item_texts=list(fusion.dataset.item_text), item_names=list(fusion.dataset.item_ids),
                  train_sequences=list(fusion.split.train),
                  user_texts=user_id_texts(fusion.split, fusion.dataset, "valid", user_max_items) if with_users
                  else None,
                  sources=fusion.sources, split=fusion.split)
