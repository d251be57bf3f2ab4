"""P5 with sequential indexing (SID), Hua et al. 2023 Sec. 4.1: items numbered from 1001
in order of first appearance in the training sequences."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.engine.recommender import FixedIDConfig, GenerativeRecommender
from bench.method import TrainingData
from methods.p5_indexing import sequential_ids


@dataclasses.dataclass(frozen=True)
class P5SequentialConfig(FixedIDConfig):
    """SID has no options of its own; the run's seed orders the items never seen in training."""


class P5SequentialIndexing(GenerativeRecommender):
    config_class = P5SequentialConfig

    def item_identifiers(self, data: TrainingData) -> list[str]:
        return sequential_ids(data.split.train, data.n_items, seed=self.context.seed)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "item_index": "sequential, numbered on training sequences only"}
