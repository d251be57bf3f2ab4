"""Dataset cards: the named datasets, read from the TOML files in the top-level ``datasets/``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.registry import Registry

CARDS_DIR = Path(__file__).resolve().parents[2] / "datasets"
REQUIRED_KEYS = ("name", "title", "format")


def read_card(path: Path) -> dict[str, Any]:
    try:
        card = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise BenchError(f"{path}: invalid dataset card: {error}") from None
    for key in REQUIRED_KEYS:
        if key not in card:
            raise BenchError(f"{path}: dataset card lacks key '{key}'")
    return card


def dataset_cards(directory: Path = CARDS_DIR) -> Registry[dict[str, Any]]:
    registry: Registry[dict[str, Any]] = Registry("dataset")
    for path in sorted(directory.glob("*.toml")):
        card = read_card(path)
        registry.add(card["name"], lambda card=card: card)
    return registry
