"""Turn a dataset name (plus an optional folder) into a prepared, cached :class:`Dataset`.

The cache key covers the card, the loader version and the size and modification time of
every source file, so a changed input is prepared again. The cache file is written
atomically: a failed or killed preparation leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from bench.data.cards import dataset_cards
from bench.data.dataset import Dataset
from bench.data.openp5 import is_openp5_folder, read_openp5_folder
from bench.errors import BenchError

LOADER_VERSION = 1
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("GENREC_BENCH_CACHE", PROJECT_ROOT / ".cache"))


def _fingerprint(card: dict[str, Any], source: Path | None) -> str:
    digest = hashlib.sha256(json.dumps(card, sort_keys=True).encode())
    digest.update(str(LOADER_VERSION).encode())
    if source is not None:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _loader(card: dict[str, Any], source: Path | None) -> Callable[[], Dataset]:
    name, format_name = card["name"], card["format"]
    if format_name == "demo":
        from bench.data.demo import generate_demo
        return lambda: generate_demo(card)
    assert source is not None
    if is_openp5_folder(source):
        return lambda: read_openp5_folder(name, source)
    if format_name == "amazon2014":
        from bench.data.amazon import read_amazon2014
        return lambda: read_amazon2014(card, source)
    if format_name == "yelp":
        from bench.data.yelp import read_yelp
        return lambda: read_yelp(card, source)
    raise BenchError(f"dataset '{name}': unknown format '{format_name}' in its card")


def prepare_dataset(name: str, data_dir: Path | None = None) -> Dataset:
    card = dataset_cards().get(name)
    source: Path | None = None
    if card["format"] != "demo":
        source = Path(data_dir) if data_dir is not None else cache_root() / "raw" / name
        if data_dir is not None and not source.is_dir():
            raise BenchError(f"{source}: data directory not found")
        source.mkdir(parents=True, exist_ok=True)
        if card["format"] == "amazon2014" and not is_openp5_folder(source):
            # Download first, so the cache key covers the files actually read.
            from bench.data.amazon import ensure_downloaded
            ensure_downloaded(card, source)
    cached = cache_root() / "prepared" / f"{name}-{_fingerprint(card, source)}.json"
    if cached.is_file():
        return Dataset.load(cached)
    dataset = _loader(card, source)()
    dataset.metadata["card"] = card
    dataset.save(cached)
    return dataset
