"""The repeat baseline: the user's own history items, most recent first, then every other
item by training popularity. It learns nothing and chooses nothing; on a dataset where
test targets repeat history items (Yelp) it shows what re-ranking seen items alone earns."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bench.method import Method, TrainingData
from methods.knn.shared import flat_histories, popularity_share


@dataclasses.dataclass(frozen=True)
class RecentConfig:
    pass


class Recent(Method):
    config_class = RecentConfig

    def fit(self, data: TrainingData) -> None:
        # Below 1, so every history item (scored above 1) comes before every other item.
        self.popularity = popularity_share(data.split.train, data.n_items)

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        scores = np.broadcast_to(self.popularity, (len(users), len(self.popularity))).copy()
        rows, items, distance = flat_histories(histories)
        # In (1, 2], larger for a more recent position; an item seen twice keeps its latest.
        np.maximum.at(scores, (rows, items), 1.0 + 1.0 / (1.0 + distance))
        return scores

    def metadata(self) -> dict[str, Any]:
        return {"order": "history items, most recent first; then training popularity"}
