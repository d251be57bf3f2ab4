"""The ``demo`` dataset: small, synthetic, deterministic, and sequential on purpose.

Items belong to themes; within a theme they form a chain (a "series": volume 1, 2, ...).
A user follows one theme's chain, mostly one step at a time, sometimes skipping one,
rarely jumping to a random item. So the next item is predictable from the last one
(a sequence model wins), while popularity is nearly flat (``pop`` loses). Item text
names the theme and the position words, so text-based IDs carry the structure too.

Timestamps are plausible review times: volumes of a series come out one after another (the
final volume of two series in three late), a user starts on some day of the first eighteen
months, comes back after about a month each time, and never reviews a volume before it is
out. So a time cut leaves the late volumes to the last windows (cold items, as in SETRec's
split). Times come from their
own random stream: the sequences are exactly those of the demo before it had timestamps.
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
    # Volume p of a series comes out p * 1.5 years / per_theme after the start; the final
    # volume of a third of the series only after 2.6 years, of another third after 3.2.
    late = {0: None, 1: 2.6 * YEAR, 2: 3.2 * YEAR}
    release = {item: DEMO_EPOCH + (late[theme_index % 3] if position == per_theme - 1 and late[theme_index % 3]
                                   else position * 1.5 * YEAR / per_theme)
               for theme_index, chain in enumerate(chains) for position, item in enumerate(chain)}
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
        timestamps.append(_review_times(clock, [release[item] for item in items]))
    metadata = {"format": "demo", "generator": "bench.data.demo", "card": dict(card)}
    return build_dataset(card["name"], sequences, item_text, item_attributes, metadata, timestamps=timestamps)


def _review_times(clock: np.random.Generator, releases: list[float]) -> list[float]:
    times = []
    moment = DEMO_EPOCH + clock.uniform(0, 1.5 * YEAR)
    for out in releases:
        moment = max(moment, out + clock.uniform(0, 3 * DAY))
        times.append(float(np.floor(moment)))
        moment += clock.exponential(30 * DAY)
    return times
