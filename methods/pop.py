"""Most-popular baseline: every user gets the items ranked by training-interaction count."""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.method import Method, TrainingData


@dataclasses.dataclass(frozen=True)
class PopularityConfig:
    pass


class Popularity(Method):
    config_class = PopularityConfig

    def fit(self, data: TrainingData) -> None:
        # Counted on the training part only: validation and test targets are not seen.
        counts = np.bincount(np.concatenate(data.split.train), minlength=data.n_items)
        self.counts = counts.astype(np.float64)

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()

    def metadata(self) -> dict:
        return {"popularity_counted_on": "training interactions"}
