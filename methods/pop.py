"""Most-popular baseline: every user gets the items ranked by training-interaction count.

With ``foundation_datasets`` set it is the zero-shot bar of Table 7 ("is it learning?"):
popularity counted on the foundation's sources only (:mod:`bench.data.fusion`, the corpus
IDGenRec and UniSRec train on), the only popularity a zero-shot model may know. The sources
share no item with the target (disjoint categories, namespaced ids), so it reaches the
target's items through their text: ``word_share[w]`` is the share of the sources' training
interactions whose item text holds the word ``w``, and a target item scores the mean
``word_share`` of its distinct words. Nothing of the target but its item text is read.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import numpy as np

from bench.config import declared_later
from bench.data.fusion import FoundationConfig, build_fusion
from bench.method import Method, TrainingData

WORD = re.compile(r"[a-z0-9]+")


@dataclasses.dataclass(frozen=True)
class PopularityConfig(FoundationConfig):
    """No options of its own; the foundation's (empty: popularity on the run's training part)."""

    # Pop ran long before it had foundation options: at their defaults a run is the same run
    # (identity, table cell) as those records, which hold none of them.
    foundation_datasets: tuple[str, ...] = declared_later(FoundationConfig, "foundation_datasets")
    foundation_data_dirs: tuple[str, ...] = declared_later(FoundationConfig, "foundation_data_dirs")
    foundation_users: int = declared_later(FoundationConfig, "foundation_users")


def text_words(text: str) -> set[str]:
    """The distinct lower-cased words of an item text's values (``key: value; ...``: keys left out)."""
    values = [part.partition(": ")[2] if ": " in part else part for part in text.split("; ")]
    return set(WORD.findall(" ".join(values).lower()))


def word_shares(item_texts: Sequence[str], interactions: np.ndarray) -> dict[str, float]:
    """Per word, the share of ``interactions`` (item indices) whose item text holds it."""
    counts = np.bincount(interactions, minlength=len(item_texts))
    totals: dict[str, int] = {}
    for text, count in zip(item_texts, counts.tolist()):
        if count:
            for word in text_words(text):
                totals[word] = totals.get(word, 0) + count
    return {word: total / max(len(interactions), 1) for word, total in totals.items()}


def text_popularity(item_texts: Sequence[str], shares: dict[str, float]) -> np.ndarray:
    """Each item's mean word share over its distinct words (0 for an item with none)."""
    scores = np.zeros(len(item_texts))
    for item, text in enumerate(item_texts):
        words = text_words(text)
        if words:
            scores[item] = sum(shares.get(word, 0.0) for word in words) / len(words)
    return scores


class Popularity(Method):
    config_class = PopularityConfig

    def fit(self, data: TrainingData) -> None:
        self.facts: dict[str, Any]
        if not self.config.foundation_datasets:
            # Counted on the training part only: validation and test targets are not seen.
            counts = np.bincount(np.concatenate(data.split.train), minlength=data.n_items)
            self.counts = counts.astype(np.float64)
            self.facts = {"popularity_counted_on": "training interactions"}
            return
        # Of the evaluated dataset only its name, folder, split protocol and item text are read.
        fusion = build_fusion(self.config, data.dataset, self.context.seed, data.split.protocol)
        shares = word_shares(fusion.dataset.item_text, np.concatenate(fusion.split.train))
        self.counts = text_popularity(data.dataset.item_text, shares)
        self.facts = {"popularity_counted_on": "training interactions of the foundation sources, carried to the "
                                               "evaluated items by their text words (mean word share)",
                      "zero_shot": True, "trained_on": fusion.sources,
                      "items_without_a_source_word": int((self.counts == 0).sum())}

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()

    def metadata(self) -> dict:
        return self.facts
