"""The zero-shot foundation corpus: a fusion of source datasets disjoint from the target
(IDGenRec Sec. 3.5, "Fusion"; UniSRec Sec. 3.3.2, multi-domain pre-training).

Every foundation-trained method (IDGenRec's foundation, UniSRec's pre-training, source
popularity) takes its corpus from :func:`build_fusion`:

- a source is any folder the harness reads (IDGenRec/OpenP5 folder, RecBole atomic files)
  or a named dataset, prepared as ``bench run`` prepares it;
- a source that is the target (same name, or same folder) is refused before any data is read;
- each source with more than ``foundation_users`` users is down-sampled to that many, drawn
  with ``seed + position`` (the paper's rule: large categories are capped);
- each source is split as the target is split (the target's protocol, leave-one-out for
  every zero-shot config here): the training part is what the foundation trains on, the
  validation items what it is model-selected on, and the test items are dropped;
- ids are namespaced ``<source>:<id>``, so two sources never share a user or an item.

The catalogue is the items of the sampled users' training parts and validation items,
source after source, each source's in its own item order: validation items that occur in no
training part stay rankable (49% of Beauty's and 65% of Sports' validation items of 1,000
users sampled with seed 42 do).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import AT_LEAST_ONE, Options, option
from bench.data.dataset import Dataset
from bench.data.split import Split, make_split
from bench.errors import BenchError


@dataclasses.dataclass(frozen=True)
class FoundationConfig(Options):
    """The sources of a zero-shot foundation: options shared by every method trained on one."""

    foundation_datasets: tuple[str, ...] = option((), "zero-shot (IDGenRec Sec. 3.5): train on these datasets only "
                                                      "and evaluate on the run's dataset without training on it")
    foundation_data_dirs: tuple[str, ...] = option((), "data folders of foundation_datasets, one each (empty: "
                                                       "the download cache)")
    foundation_users: int = option(30000, "users sampled from each foundation dataset that has more",
                                   range=AT_LEAST_ONE)


@dataclasses.dataclass(frozen=True)
class Fusion:
    dataset: Dataset  # the fused sources: each user's training part, then validation items
    split: Split  # training parts and validation items over the fused catalogue; no test targets
    sources: dict[str, dict[str, Any]]  # source name -> users, items, ... (what records call trained_on)

    def digest(self) -> str:
        """Identifies the corpus: item texts, training parts and validation items."""
        content = hashlib.sha256("\n".join(self.dataset.item_text).encode())
        for items in self.split.train + [np.full(1, -1)] + self.split.valid_items:
            content.update(np.asarray(items, dtype=np.int64).tobytes() + b"|")
        return content.hexdigest()[:16]


def sample_users(n_users: int, limit: int, seed: int) -> np.ndarray:
    """All users, or ``limit`` of them drawn without replacement (kept in dataset order)."""
    if n_users <= limit:
        return np.arange(n_users)
    return np.sort(np.random.default_rng(seed).choice(n_users, size=limit, replace=False))


def _same_folder(data_dir: str, target: Dataset) -> bool:
    target_folder = target.metadata.get("source")
    return target_folder is not None and Path(data_dir).resolve() == Path(target_folder).resolve()


def check_sources(config: FoundationConfig, target: Dataset) -> None:
    """The zero-shot rules: never the target (by name or folder), one folder per source or
    none, no source twice. Reads no data."""
    names, data_dirs = config.foundation_datasets, config.foundation_data_dirs
    if target.name in names:
        raise BenchError(f"config key 'foundation_datasets' lists '{target.name}', the dataset being evaluated; "
                         "a zero-shot model must not train on it")
    if data_dirs and len(data_dirs) != len(names):
        raise BenchError(f"config key 'foundation_data_dirs' has {len(data_dirs)} entries for "
                         f"{len(names)} foundation datasets; give one per dataset or none")
    if len(set(names)) != len(names):
        raise BenchError(f"config key 'foundation_datasets' names a dataset twice: {list(names)}")
    for name, data_dir in zip(names, data_dirs):
        if _same_folder(data_dir, target):
            raise BenchError(f"config key 'foundation_data_dirs': source '{name}' reads {data_dir}, the folder of "
                             f"the dataset being evaluated ('{target.name}'); a zero-shot model must not train on it")


def _source(name: str, data_dir: str | None, protocol: str) -> tuple[Dataset, Split]:
    from bench.data.prepare import prepare_dataset

    dataset = prepare_dataset(name, Path(data_dir) if data_dir else None)
    return make_split(dataset, protocol)


def build_fusion(config: FoundationConfig, target: Dataset, seed: int, protocol: str = "leave-one-out") -> Fusion:
    """The fusion of ``config``'s sources for a run evaluated on ``target`` (whose name and
    folder only are read), each source split with ``protocol`` (the target's)."""
    check_sources(config, target)
    if not config.foundation_datasets:
        raise BenchError("config key 'foundation_datasets' is empty: a zero-shot foundation needs sources")
    data_dirs = config.foundation_data_dirs or (None,) * len(config.foundation_datasets)
    user_ids: list[str] = []
    item_ids: list[str] = []
    item_text: list[str] = []
    item_attributes: list[list[str]] = []
    train: list[np.ndarray] = []
    valid: list[np.ndarray] = []
    sources: dict[str, dict[str, Any]] = {}
    for position, (name, data_dir) in enumerate(zip(config.foundation_datasets, data_dirs)):
        dataset, split = _source(name, data_dir, protocol)
        users = sample_users(split.n_users, config.foundation_users, seed + position).tolist()
        trained = np.concatenate([split.train[user] for user in users])
        validated = np.concatenate([split.valid_items[user] for user in users])
        kept = np.unique(np.concatenate([trained, validated]))
        new_index = np.full(dataset.n_items, -1, dtype=np.int64)
        new_index[kept] = np.arange(len(kept)) + len(item_ids)
        item_ids.extend(f"{name}:{dataset.item_ids[item]}" for item in kept.tolist())
        item_text.extend(dataset.item_text[item] for item in kept.tolist())
        item_attributes.extend(dataset.item_attributes[item] for item in kept.tolist())
        user_ids.extend(f"{name}:{dataset.user_ids[user]}" for user in users)
        train.extend(new_index[split.train[user]] for user in users)
        valid.extend(new_index[split.valid_items[user]] for user in users)
        sources[name] = {"users": len(users), "users_before_sampling": split.n_users, "items": int(len(kept)),
                         "validation_only_items": int(len(np.setdiff1d(kept, trained))),
                         **({"data_dir": data_dir} if data_dir else {})}
    fused = Dataset(name="+".join(config.foundation_datasets), user_ids=user_ids, item_ids=item_ids,
                    sequences=[np.concatenate([history, targets]) for history, targets in zip(train, valid)],
                    item_text=item_text, item_attributes=item_attributes,
                    metadata={"format": "fusion", "sources": sources, "protocol": protocol})
    # No test phase: nothing is tested on the sources (their test items stay out of the catalogue).
    no_test = [np.zeros(0, dtype=np.int64) for _ in train]
    split = Split(train=train, valid_items=valid, test_items=no_test, n_items=len(item_ids), protocol=protocol,
                  facts={"foundation": fused.name})
    return Fusion(dataset=fused, split=split, sources=sources)
