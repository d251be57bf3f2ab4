"""Turn a dataset name (plus an optional folder) into a prepared, cached :class:`Dataset`.

The cache key covers the card, the loader version, the preparation options and the size
and modification time of every source file, so a changed input is prepared again. The
cache file is written atomically: a failed or killed preparation leaves nothing behind.

A name no card declares is a *user dataset*: accepted when ``--data-dir`` holds a
recognised format (RecBole atomic files, or the IDGenRec/OpenP5 folder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from bench.config import DataConfig
from bench.data.atomic import is_atomic_folder, read_atomic_folder
from bench.data.cards import dataset_cards
from bench.data.dataset import Dataset
from bench.data.openp5 import SEQUENCE_FILE, is_openp5_folder, read_openp5_folder
from bench.errors import BenchError

# 2: timestamps and published-split phases in the prepared dataset, demo timestamps,
#    counts of ID-ordered sequences, RecBole atomic folders.
# 3: IDGenRec folders read item_plain_text.txt (real titles and categories) when present.
LOADER_VERSION = 3
# More than this share of sequences in ascending item-ID order: the source lost its time order.
ID_ORDER_WARNING_SHARE = 0.5
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("GENREC_BENCH_CACHE", PROJECT_ROOT / ".cache"))


def _fingerprint(card: dict[str, Any], source: Path | None, options: DataConfig) -> str:
    digest = hashlib.sha256(json.dumps(card, sort_keys=True).encode())
    digest.update(str(LOADER_VERSION).encode())
    if not options.is_default():
        digest.update(json.dumps(dataclasses.asdict(options), sort_keys=True).encode())
    folders = [source] if source is not None else []
    if options.item_attributes_from is not None:
        folders.append(Path(options.item_attributes_from))
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _loader(card: dict[str, Any], source: Path | None, options: DataConfig) -> Callable[[], Dataset]:
    name, format_name = card["name"], card["format"]
    if format_name == "demo":
        from bench.data.demo import generate_demo
        return lambda: generate_demo(card)
    assert source is not None
    if is_atomic_folder(source):
        return lambda: read_atomic_folder(name, source, options)
    if not options.is_default():
        raise BenchError(f"dataset '{name}': the data.* options (data.rating_threshold, data.k_core, "
                         f"data.item_attributes_from) apply to RecBole atomic folders only, {source} is not one")
    if is_openp5_folder(source):
        return lambda: read_openp5_folder(name, source)
    if format_name == "openp5":
        raise BenchError(f"dataset '{name}': {source} holds no {SEQUENCE_FILE}; point --data-dir at the "
                         "IDGenRec/OpenP5 folder")
    if format_name == "amazon2014":
        from bench.data.amazon import read_amazon2014
        return lambda: read_amazon2014(card, source)
    if format_name == "yelp":
        from bench.data.yelp import read_yelp
        return lambda: read_yelp(card, source)
    raise BenchError(f"dataset '{name}': unknown format '{format_name}' in its card")


def detected_format(directory: Path) -> str | None:
    if is_atomic_folder(directory):
        return "atomic"
    if is_openp5_folder(directory):
        return "openp5"
    return None


def user_card(name: str, data_dir: Path | None) -> dict[str, Any]:
    """A card for a name no card declares, when its folder holds a recognised format."""
    cards = dataset_cards()
    if name in cards.names():
        return cards.get(name)
    if data_dir is None:
        cards.get(name)  # raises: unknown dataset, with "did you mean"
    if not Path(data_dir).is_dir():
        raise BenchError(f"{data_dir}: data directory not found")
    format_name = detected_format(Path(data_dir))
    if format_name is None:
        raise BenchError(f"dataset '{name}' has no card and {data_dir} holds no recognised format "
                         f"(RecBole atomic NAME.inter files or the IDGenRec/OpenP5 {SEQUENCE_FILE})")
    return {"name": name, "title": f"user dataset from {data_dir}", "format": format_name, "user_dataset": True}


def prepare_dataset(name: str, data_dir: Path | None = None, options: DataConfig | None = None) -> Dataset:
    options = options or DataConfig()
    card = user_card(name, data_dir)
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
    cached = cache_root() / "prepared" / f"{name}-{_fingerprint(card, source, options)}.json"
    if cached.is_file():
        return Dataset.load(cached)
    dataset = _loader(card, source, options)()
    dataset.metadata["card"] = card
    if card.get("user_dataset"):
        dataset.metadata["user_dataset"] = True
    if card.get("order"):
        dataset.metadata["declared_order"] = card["order"]
    dataset.save(cached)
    return dataset


def order_notice(dataset: Dataset) -> tuple[str, str] | None:
    """``("warning", text)`` when most sequences are in ascending item-ID order and no card
    says so, ``("note", text)`` when the card declares that order, ``None`` otherwise."""
    share = dataset.metadata.get("share_sequences_in_ascending_id_order", 0.0)
    declared = dataset.metadata.get("declared_order")
    where = dataset.metadata.get("sequence_file") or dataset.metadata.get("source") or dataset.name
    if declared == "ascending-item-id":
        return ("note", f"dataset {dataset.name}: {where} is declared by its card to be in ascending item-ID order "
                        f"({share:.1%} of sequences), not time order")
    if share <= ID_ORDER_WARNING_SHARE:
        return None
    count = dataset.metadata.get("sequences_in_ascending_id_order", round(share * dataset.n_users))
    return ("warning", f"{where}: {share:.1%} of user sequences ({count} of {dataset.n_users}) are in ascending "
                       "item-ID order, not time order; leave-one-out will then test each user's highest-ID item "
                       "and validate on the second highest, not their latest items. Use a chronological copy of "
                       "the data, or a dataset card that declares order = \"ascending-item-id\"")


def dataset_messages(dataset: Dataset) -> list[str]:
    """Lines ``bench run`` and ``bench data prepare`` print about the prepared data."""
    lines = [f"warning: {text}" for text in dataset.metadata.get("warnings", [])]
    notice = order_notice(dataset)
    if notice is not None:
        lines.append(f"{notice[0]}: {notice[1]}")
    return lines
