"""An example third-party plugin: a first-order Markov chain over items.

The next item is scored by how often it followed the user's last item in the training
sequences, with popularity as a small tie-breaker. Registered from this folder's
pyproject.toml exactly as the built-in methods are.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.config import NON_NEGATIVE, Options, option
from bench.method import Method, TableColumn, TrainingData


@dataclasses.dataclass(frozen=True)
class MarkovConfig(Options):
    popularity_weight: float = option(1e-6, "weight of training popularity added to break ties", range=NON_NEGATIVE)


class FirstOrderMarkov(Method):
    config_class = MarkovConfig
    # Its own column in Table 4 (`bench table standard`), after the columns the papers define.
    table_columns = (TableColumn(table="standard", label="Markov"),)

    def fit(self, data: TrainingData) -> None:
        n = data.n_items
        self.transitions = np.zeros((n, n))
        for sequence in data.split.train:
            np.add.at(self.transitions, (sequence[:-1], sequence[1:]), 1.0)
        self.popularity = np.bincount(np.concatenate(data.split.train), minlength=n).astype(float)

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        last_items = np.array([history[-1] for history in histories])
        return self.transitions[last_items] + self.config.popularity_weight * self.popularity
