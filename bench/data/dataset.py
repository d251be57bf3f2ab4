"""The prepared dataset: what every method and the evaluator read.

Items are numbered 0..n_items-1 and users 0..n_users-1 in the order of the source
file; each user's sequence is chronological (oldest first). Item text is the
``key: value; key: value`` string the IDGenRec paper feeds its ID generator.

Two optional per-interaction arrays ride along with the sequences: ``timestamps`` (when the
source has them; the temporal protocol needs them) and ``phases`` (a published split read
from files: 0 = train, 1 = validation, 2 = test, each user's sequence ordered train first).
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
    timestamps: list[np.ndarray] | None = None
    phases: list[np.ndarray] | None = None

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
            "item_attributes": self.item_attributes, "metadata": self.metadata,
            "timestamps": None if self.timestamps is None else [t.tolist() for t in self.timestamps],
            "phases": None if self.phases is None else [p.tolist() for p in self.phases]})

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
                   metadata=data["metadata"],
                   timestamps=None if data.get("timestamps") is None
                   else [np.asarray(t, dtype=np.float64) for t in data["timestamps"]],
                   phases=None if data.get("phases") is None
                   else [np.asarray(p, dtype=np.int8) for p in data["phases"]])

    def select_users(self, users: np.ndarray) -> "Dataset":
        """The same catalogue (items, text, attributes) with only the given users."""
        chosen = np.asarray(users, dtype=np.int64).tolist()
        return dataclasses.replace(
            self, user_ids=[self.user_ids[u] for u in chosen], sequences=[self.sequences[u] for u in chosen],
            timestamps=None if self.timestamps is None else [self.timestamps[u] for u in chosen],
            phases=None if self.phases is None else [self.phases[u] for u in chosen], metadata=dict(self.metadata))


def build_dataset(name: str, user_sequences: list[tuple[str, list[str]]], item_text: dict[str, str],
                  item_attributes: dict[str, list[str]], metadata: dict[str, Any],
                  timestamps: list[list[float]] | None = None, phases: list[list[int]] | None = None,
                  min_interactions: int = MIN_INTERACTIONS) -> Dataset:
    """Number users and items, drop users too short for leave-one-out, with a count.

    ``timestamps`` and ``phases``, when given, are aligned with ``user_sequences``. A
    published split (``phases``) keeps every user: the split is given, not derived.
    """
    keep = [index for index, (_, items) in enumerate(user_sequences) if len(items) >= min_interactions]
    kept = [user_sequences[index] for index in keep]
    dropped = len(user_sequences) - len(kept)
    item_index: dict[str, int] = {}
    for _, items in kept:
        for item in items:
            item_index.setdefault(item, len(item_index))
    item_ids = list(item_index)
    sequences = [np.asarray([item_index[i] for i in items], dtype=np.int64) for _, items in kept]
    # Sequences of one item are trivially ordered and say nothing about the source's order.
    ordered = sum(1 for _, items in kept if len(items) > 1 and items == sorted(items))
    metadata = dict(metadata)
    metadata[f"dropped_users_fewer_than_{min_interactions}" if min_interactions != MIN_INTERACTIONS
             else "dropped_users_fewer_than_3"] = dropped
    # A chronological sequence is rarely in ascending id order; a high share means the
    # source lost its time order (recorded so that a reader of the results can tell).
    metadata["share_sequences_in_ascending_id_order"] = round(ordered / max(len(kept), 1), 4)
    metadata["sequences_in_ascending_id_order"] = ordered
    return Dataset(name=name, user_ids=[u for u, _ in kept], item_ids=item_ids, sequences=sequences,
                   item_text=[item_text.get(i, f"item: {i}") for i in item_ids],
                   item_attributes=[item_attributes.get(i, []) for i in item_ids], metadata=metadata,
                   timestamps=None if timestamps is None
                   else [np.asarray(timestamps[index], dtype=np.float64) for index in keep],
                   phases=None if phases is None else [np.asarray(phases[index], dtype=np.int8) for index in keep])
