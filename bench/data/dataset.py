"""The prepared dataset: what every method and the evaluator read.

Items are numbered 0..n_items-1 and users 0..n_users-1 in the order of the source
file; each user's sequence is chronological (oldest first). Item text is the
``key: value; key: value`` string the IDGenRec paper feeds its ID generator.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.storage import atomic_write_text

MIN_INTERACTIONS = 3  # one training item, one validation item, one test item


@dataclasses.dataclass
class Dataset:
    name: str
    user_ids: list[str]
    item_ids: list[str]
    sequences: list[np.ndarray]
    item_text: list[str]
    item_attributes: list[list[str]]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def summary(self) -> dict[str, int]:
        return {"users": self.n_users, "items": self.n_items, "interactions": self.n_interactions}

    def to_json(self) -> str:
        return json.dumps({
            "name": self.name, "user_ids": self.user_ids, "item_ids": self.item_ids,
            "sequences": [s.tolist() for s in self.sequences], "item_text": self.item_text,
            "item_attributes": self.item_attributes, "metadata": self.metadata})

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Dataset":
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise BenchError(f"{path}: cannot read prepared dataset: {error}") from None
        return cls(name=data["name"], user_ids=data["user_ids"], item_ids=data["item_ids"],
                   sequences=[np.asarray(s, dtype=np.int64) for s in data["sequences"]],
                   item_text=data["item_text"], item_attributes=data["item_attributes"],
                   metadata=data["metadata"])


def build_dataset(name: str, user_sequences: list[tuple[str, list[str]]], item_text: dict[str, str],
                  item_attributes: dict[str, list[str]], metadata: dict[str, Any]) -> Dataset:
    """Number users and items, drop users too short for leave-one-out, with a count."""
    kept = [(user, items) for user, items in user_sequences if len(items) >= MIN_INTERACTIONS]
    dropped = len(user_sequences) - len(kept)
    item_index: dict[str, int] = {}
    for _, items in kept:
        for item in items:
            item_index.setdefault(item, len(item_index))
    item_ids = list(item_index)
    sequences = [np.asarray([item_index[i] for i in items], dtype=np.int64) for _, items in kept]
    ordered = sum(1 for _, items in kept if items == sorted(items))
    metadata = dict(metadata)
    metadata["dropped_users_fewer_than_3"] = dropped
    # A chronological sequence is rarely in ascending id order; a high share means the
    # source lost its time order (recorded so that a reader of the results can tell).
    metadata["share_sequences_in_ascending_id_order"] = round(ordered / max(len(kept), 1), 4)
    return Dataset(name=name, user_ids=[u for u, _ in kept], item_ids=item_ids, sequences=sequences,
                   item_text=[item_text.get(i, f"item: {i}") for i in item_ids],
                   item_attributes=[item_attributes.get(i, []) for i in item_ids], metadata=metadata)
