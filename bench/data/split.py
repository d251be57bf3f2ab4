"""Leave-one-out: the last item of each sequence is the test target, the second last the
validation target, everything before is training. Every user is in both phases."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Literal

import numpy as np

from bench.data.dataset import MIN_INTERACTIONS, Dataset
from bench.errors import BenchError

Phase = Literal["valid", "test"]


@dataclasses.dataclass(frozen=True)
class Split:
    train: list[np.ndarray]
    valid_target: np.ndarray
    test_target: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.train)

    def histories(self, phase: Phase) -> list[np.ndarray]:
        """What a model may read to predict the phase's target (never the target itself)."""
        if phase == "valid":
            return self.train
        return [np.append(history, valid) for history, valid in zip(self.train, self.valid_target)]

    def targets(self, phase: Phase) -> np.ndarray:
        return self.valid_target if phase == "valid" else self.test_target

    def digest(self) -> str:
        """Identifies users, order and targets; runs are comparable only when this matches."""
        digest = hashlib.sha256()
        digest.update(self.valid_target.tobytes())
        digest.update(self.test_target.tobytes())
        digest.update(np.asarray([len(h) for h in self.train], dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


def leave_one_out(dataset: Dataset) -> Split:
    for user, sequence in zip(dataset.user_ids, dataset.sequences):
        if len(sequence) < MIN_INTERACTIONS:
            raise BenchError(f"dataset '{dataset.name}': user '{user}' has {len(sequence)} interactions, "
                             f"leave-one-out needs {MIN_INTERACTIONS}")
    return Split(train=[s[:-2] for s in dataset.sequences],
                 valid_target=np.asarray([s[-2] for s in dataset.sequences], dtype=np.int64),
                 test_target=np.asarray([s[-1] for s in dataset.sequences], dtype=np.int64),
                 n_items=dataset.n_items)
