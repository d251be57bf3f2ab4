"""P5 with semantic indexing (SemID), Hua et al. 2023 Sec. 4.3: the item's category path
as new tokens, then a number that tells apart the items on that path."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from bench.config import AT_LEAST_ONE, option
from bench.engine.recommender import FixedIDConfig, GenerativeRecommender
from bench.errors import BenchError
from bench.method import TrainingData
from methods.p5_indexing import SemanticIndex, semantic_ids


@dataclasses.dataclass(frozen=True)
class P5SemanticConfig(FixedIDConfig):
    # Optional[...] rather than "int | None": the config reader coerces typing.Union only.
    max_categories: Optional[int] = option(None, "keep only the first this many category names of an item's path "
                                                 "(shorter IDs); None keeps them all, as the paper does",
                                           range=AT_LEAST_ONE)


class P5SemanticIndexing(GenerativeRecommender):
    config_class = P5SemanticConfig

    def item_identifiers(self, data: TrainingData) -> list[str]:
        if not any(names for names in data.dataset.item_attributes):
            raise BenchError(f"p5-semid: dataset {data.dataset.name} has no item categories, and SemID is built "
                             "from them (give data.item_attributes_from a folder with the same items' "
                             "item2attributes.json; docs/datasets.md)")
        self.index: SemanticIndex = semantic_ids(data.dataset.item_attributes, self.config.max_categories)
        return self.index.item_ids

    def extra_tokens(self) -> list[str]:
        return self.index.tokens

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "semid_category_tokens": len(self.index.tokens)}
