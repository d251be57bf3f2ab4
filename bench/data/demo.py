"""The ``demo`` dataset: small, synthetic, deterministic, and sequential on purpose.

Items belong to themes; within a theme they form a chain (a "series": volume 1, 2, ...).
A user follows one theme's chain, mostly one step at a time, sometimes skipping one,
rarely jumping to a random item. So the next item is predictable from the last one
(a sequence model wins), while popularity is nearly flat (``pop`` loses). Item text
names the theme and the position words, so text-based IDs carry the structure too.

Timestamps are plausible review times: each user starts on a day spread over two years and
comes back after a few days each time. They are drawn from their own random stream, so the
sequences are exactly those of the demo before it had timestamps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.dataset import Dataset, build_dataset

THEMES = ["dinosaur", "rocket", "castle", "pirate", "robot", "garden", "ocean", "circus",
          "safari", "winter", "jungle", "desert"]
KINDS = ["puzzle", "figure", "book", "kit", "game", "blocks", "plush", "card", "set", "model",
         "track", "lamp", "mask", "drum", "kite"]
BRANDS = ["Acme", "Bolt", "Cedar", "Dune", "Ember", "Fable"]
DAY = 86_400.0
YEAR = 365 * DAY
DEMO_EPOCH = 1_388_534_400.0  # 2014-01-01 UTC, within the Amazon 2014 review data's years


def generate_demo(card: dict[str, Any]) -> Dataset:
    rng = np.random.default_rng(int(card.get("seed", 7)))
    n_users, n_items, n_themes = int(card["users"]), int(card["items"]), int(card["themes"])
    per_theme = n_items // n_themes
    item_ids, item_text, item_attributes = [], {}, {}
    chains: list[list[str]] = []
    for theme_index in range(n_themes):
        theme = THEMES[theme_index % len(THEMES)]
        brand = BRANDS[theme_index % len(BRANDS)]
        chain = []
        for position in range(per_theme):
            item = f"D{theme_index:02d}{position:03d}"
            kind = KINDS[position % len(KINDS)]
            item_text[item] = (f"title: {theme} {kind} volume {position + 1}; "
                               f"categories: toys, {theme}; brand: {brand}")
            item_attributes[item] = ["toys", theme, brand]
            chain.append(item)
            item_ids.append(item)
        chains.append(chain)
    sequences: list[tuple[str, list[str]]] = []
    clock = np.random.default_rng(int(card.get("seed", 7)) + 1)
    timestamps: list[list[float]] = []
    for user_index in range(n_users):
        chain = chains[rng.integers(n_themes)]
        length = int(rng.integers(5, 11))
        position = int(rng.integers(0, per_theme))
        items = []
        for _ in range(length):
            items.append(chain[position % per_theme])
            draw = rng.random()
            if draw < 0.05:
                position = int(rng.integers(0, per_theme))
            else:
                position += 1 if draw < 0.85 else 2
        sequences.append((f"U{user_index:04d}", items))
        start = DEMO_EPOCH + clock.uniform(0, 2 * YEAR)
        gaps = np.concatenate([[0.0], np.cumsum(clock.exponential(5 * DAY, size=len(items) - 1))])
        timestamps.append(np.floor(start + gaps).tolist())
    metadata = {"format": "demo", "generator": "bench.data.demo", "card": dict(card)}
    return build_dataset(card["name"], sequences, item_text, item_attributes, metadata, timestamps=timestamps)
