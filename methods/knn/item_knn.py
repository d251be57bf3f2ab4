"""Item-kNN: next-item scores from item-item co-occurrence in the training sequences,
summed over the user's history with recent items weighing more.

The similarity of two items is the cosine of their columns in the binary user-item matrix of
the training part (co-occurrence in one user's training sequence, over the square root of the
two items' user counts; an item is not its own neighbour), the item-kNN of session-based
recommendation (Hidasi et al., ICLR 2016; Ludewig et al., 2021). Each item keeps its
``neighbours`` most similar items. A user's score of item j is the sum over the history items h
of ``decay ** d(h) * similarity(h, j)``, d(h) = positions of h before the last history item.
Items no history item reaches follow in training-popularity order. Neighbourhood size and
decay are chosen on validation from the candidate values in the config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bench.config import option
from bench.method import Method, TrainingData
from methods.knn.shared import (NeighbourhoodConfig, choose_on_validation, incidence, keep_top_per_row,
                                popularity_share, recency_weighted, then_popularity)


@dataclasses.dataclass(frozen=True)
class ItemKNNConfig(NeighbourhoodConfig):
    neighbours: tuple[int, ...] = option(
        (10, 20, 50, 100, 200), "candidate neighbourhood sizes (most similar items kept per item), chosen on validation")


class ItemKNN(Method):
    config_class = ItemKNNConfig

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        users_items = incidence(data.split.train, data.n_items)
        co_occurrence = (users_items.T @ users_items).tocsr()
        co_occurrence.setdiag(0.0)
        co_occurrence.eliminate_zeros()
        user_counts = np.asarray(users_items.sum(axis=0)).ravel()
        inverse_root = np.divide(1.0, np.sqrt(user_counts), out=np.zeros_like(user_counts), where=user_counts > 0)
        self.similarity_all = co_occurrence.multiply(inverse_root[:, None]).multiply(inverse_root[None, :]).tocsr()
        self.popularity = popularity_share(data.split.train, data.n_items)
        self._kept: dict[int, Any] = {}
        self.selection = choose_on_validation(self, data.split, self.config.grid(), self.config.validation_users,
                                              self._apply)

    def _apply(self, parameters: dict[str, Any]) -> None:
        neighbours = int(parameters["neighbours"])
        if neighbours not in self._kept:
            self._kept[neighbours] = keep_top_per_row(self.similarity_all, neighbours)
        self.similarity, self.decay = self._kept[neighbours], float(parameters["decay"])

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        weighted = recency_weighted(histories, self.n_items, self.decay)
        return then_popularity((weighted @ self.similarity).toarray(), self.popularity)

    def metadata(self) -> dict[str, Any]:
        return {"selection": self.selection, "similarity": "cosine of item columns of the training user-item matrix",
                "similar_pairs": int(self.similarity_all.nnz), "kept_pairs": int(self.similarity.nnz)}
