"""Session-kNN in the V-SKNN style (Ludewig and Jannach, UMUAI 2018): the user's history,
recent items weighing more, is compared with every other user's training sequence; the
``neighbours`` most similar sequences vote for their items.

Similarity: cosine between the user's recency-weighted history vector (the item d positions
before the last weighs ``decay ** d``; V-SKNN's decay is linear, an exponential one covers
"all alike" at decay 1 and "last item only" near 0) and a neighbour's binary item vector.
Item score: the sum of the similarities of the neighbours holding the item; items no neighbour
holds follow in training-popularity order. The user's own training sequence is never a
neighbour (it holds only the user's history). V-SKNN's sampling of recent candidate sessions
is not needed: one sparse product compares all of them. Neighbourhood size and decay are
chosen on validation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sparse

from bench.config import option
from bench.method import Method, TrainingData
from methods.knn.shared import (NeighbourhoodConfig, choose_on_validation, incidence, keep_top_per_row,
                                popularity_share, recency_weighted, then_popularity)


@dataclasses.dataclass(frozen=True)
class SessionKNNConfig(NeighbourhoodConfig):
    neighbours: tuple[int, ...] = option(
        (20, 50, 100, 200, 500),
        "candidate neighbourhood sizes (most similar training sequences), chosen on validation")


class SessionKNN(Method):
    config_class = SessionKNNConfig

    def fit(self, data: TrainingData) -> None:
        self.n_items = data.n_items
        self.sequences = incidence(data.split.train, data.n_items)
        lengths = np.asarray(self.sequences.sum(axis=1)).ravel()
        self.inverse_norm = np.divide(1.0, np.sqrt(lengths), out=np.zeros_like(lengths), where=lengths > 0)
        self.popularity = popularity_share(data.split.train, data.n_items)
        self.selection = choose_on_validation(self, data.split, self.config.grid(), self.config.validation_users,
                                              self._apply)

    def _apply(self, parameters: dict[str, Any]) -> None:
        self.neighbours, self.decay = int(parameters["neighbours"]), float(parameters["decay"])

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        weighted = recency_weighted(histories, self.n_items, self.decay)
        query_norm = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        inverse_query = np.divide(1.0, query_norm, out=np.zeros_like(query_norm), where=query_norm > 0)
        overlap = (weighted @ self.sequences.T).tocoo()
        similarity = overlap.data * inverse_query[overlap.row] * self.inverse_norm[overlap.col]
        others = overlap.col != np.asarray(users, dtype=np.int64)[overlap.row]
        candidates = sparse.csr_matrix((similarity[others], (overlap.row[others], overlap.col[others])),
                                       shape=overlap.shape)
        return then_popularity((keep_top_per_row(candidates, self.neighbours) @ self.sequences).toarray(),
                               self.popularity)

    def metadata(self) -> dict[str, Any]:
        return {"selection": self.selection, "neighbours_from": "other users' training sequences",
                "similarity": "cosine of the recency-weighted history and a binary training sequence"}
