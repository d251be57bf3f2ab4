"""P5 with random indexing (RID), Hua et al. 2023 Sec. 3.1: the control for SID, the
same numbers dealt out at random with the run's seed."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.engine.recommender import FixedIDConfig, GenerativeRecommender
from bench.method import TrainingData
from methods.p5_indexing import random_ids


@dataclasses.dataclass(frozen=True)
class P5RandomConfig(FixedIDConfig):
    """RID has no options of its own; the run's seed draws the numbers."""


class P5RandomIndexing(GenerativeRecommender):
    config_class = P5RandomConfig

    def item_identifiers(self, data: TrainingData) -> list[str]:
        return random_ids(data.n_items, seed=self.context.seed)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "item_index": "random permutation of the SID numbers"}
