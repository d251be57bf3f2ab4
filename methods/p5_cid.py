"""P5 with collaborative indexing (CID), Hua et al. 2023 Sec. 4.2: recursive spectral
clustering of the items' co-occurrence graph; an ID is one new token per cluster level
and one for the item's place in its leaf cluster."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bench.config import AT_LEAST_ONE, Range, option
from bench.engine.recommender import FixedIDConfig, GenerativeRecommender
from bench.method import TrainingData
from methods.p5_indexing import CollaborativeIndex, collaborative_ids


@dataclasses.dataclass(frozen=True)
class P5CollaborativeConfig(FixedIDConfig):
    # Defaults: the authors' released CID run (--cluster_size 500 --cluster_number 20).
    cluster_size: int = option(500, "a cluster with more items than this is clustered again (k in Sec. 4.2)",
                               range=AT_LEAST_ONE)
    n_clusters: int = option(20, "clusters made at each split (N in Sec. 4.2)",
                             range=Range(lambda value: value >= 2, "at least 2"))


class P5CollaborativeIndexing(GenerativeRecommender):
    config_class = P5CollaborativeConfig

    def item_identifiers(self, data: TrainingData) -> list[str]:
        started = time.perf_counter()
        self.index: CollaborativeIndex = collaborative_ids(
            data.split.train, data.n_items, cluster_size=self.config.cluster_size,
            n_clusters=self.config.n_clusters, seed=self.context.seed, progress=self.context.progress)
        self.index_seconds = time.perf_counter() - started
        return self.index.item_ids

    def extra_tokens(self) -> list[str]:
        return self.index.tokens

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "cid_levels": self.index.depth, "cid_tokens": len(self.index.tokens),
                "cid_index_seconds": round(self.index_seconds, 2)}
