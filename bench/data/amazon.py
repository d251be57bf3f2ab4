"""The Amazon review data 2014 (McAuley et al.), as used by P5 and IDGenRec.

Two files per category, in the dataset folder (downloaded from the card's URLs if absent):

- ``reviews_<Category>_5.json.gz``: one JSON object per line (``reviewerID``, ``asin``,
  ``unixReviewTime``, ...), the upstream 5-core subset.
- ``meta_<Category>.json.gz``: one *Python dict literal* per line (single quotes, so not
  JSON; parsed with :func:`ast.literal_eval`): ``asin``, ``title``, ``description``,
  ``price``, ``brand``, ``categories`` (a list of category paths), ``salesRank``,
  ``related``, ``imUrl``.

Preparation: the 5-core filter is applied again, iteratively until stable (users and
items with at least 5 interactions, as P5 and IDGenRec state); on the upstream 5-core
file it should remove nothing, and the counts before and after are recorded to show it.
Each user's reviews are ordered by ``unixReviewTime``; ties (same day, the field has a
one-day resolution) keep the order of the file.

Item text, the ``key: value; ...`` string IDGenRec's ID generator reads (IDGenRec §3.1:
the item's plain text is its metadata, e.g. title, brand, categories, description), uses
every descriptive field, in this order: ``title``, ``brand``, ``categories`` (all paths
flattened, duplicates removed), ``price``, ``sales rank`` (``<rank> in <category>``: a
colon inside a value would break the ``key: value`` structure), ``description`` (last,
being the longest, so that truncation to a model's input length cuts it first); other
string or number fields an item may carry follow under their own key. Left out: ``asin``
(an identifier, not a description), ``related`` (ids of other items: co-purchase data
outside the training split would leak interactions) and ``imUrl`` (a link). HTML
entities are decoded and whitespace collapsed.

Item attributes (FDSA, S3Rec) follow S3Rec's preprocessing: each category path without
its root (the top-level category that all items of a file share) plus the brand.
"""

from __future__ import annotations

import ast
import html
import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.dataset import Dataset, build_dataset
from bench.data.download import fetch, json_object, keyed_records, read_lines
from bench.errors import BenchError

CORE = 5
SKIPPED_META_KEYS = {"asin", "related", "imUrl"}
# Cheap look-up of a meta line's asin, so that the (slow) literal_eval runs only for
# the items that survive the filter: a meta file lists ten to thirty times more items.
_ASIN_PATTERN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")
_WHITESPACE = re.compile(r"\s+")


class InteractionLog:
    """(user, item, time) triples in file order, with users and items coded by first appearance."""

    def __init__(self) -> None:
        self.user_codes: dict[str, int] = {}
        self.item_codes: dict[str, int] = {}
        self._users, self._items, self._times = array("q"), array("q"), array("q")

    def add(self, user: str, item: str, time: int) -> None:
        self._users.append(self.user_codes.setdefault(user, len(self.user_codes)))
        self._items.append(self.item_codes.setdefault(item, len(self.item_codes)))
        self._times.append(time)

    def __len__(self) -> int:
        return len(self._users)

    def counts(self, keep: np.ndarray | None = None) -> dict[str, int]:
        users, items = np.frombuffer(self._users, np.int64), np.frombuffer(self._items, np.int64)
        if keep is not None:
            users, items = users[keep], items[keep]
        return {"users": int(np.unique(users).size), "items": int(np.unique(items).size),
                "interactions": int(users.size)}

    def core_filter(self, core: int = CORE) -> tuple[np.ndarray, int]:
        """Mask of the interactions in the ``core``-core, and the number of removal rounds.

        Removing a sparse user can push an item below the threshold and vice versa, so
        the filter repeats until a round removes nothing.
        """
        users, items = np.frombuffer(self._users, np.int64), np.frombuffer(self._items, np.int64)
        keep = np.ones(users.size, dtype=bool)
        rounds = 0
        while True:
            user_counts = np.bincount(users[keep], minlength=len(self.user_codes))
            item_counts = np.bincount(items[keep], minlength=len(self.item_codes))
            sparse = keep & ((user_counts[users] < core) | (item_counts[items] < core))
            if not sparse.any():
                return keep, rounds
            keep &= ~sparse
            rounds += 1

    def sequences(self, keep: np.ndarray) -> list[tuple[str, list[str]]]:
        """Each kept user's items ordered by time; users in order of first appearance."""
        users, items = np.frombuffer(self._users, np.int64), np.frombuffer(self._items, np.int64)
        times = np.frombuffer(self._times, np.int64)
        kept = np.flatnonzero(keep)
        if kept.size == 0:
            return []
        # lexsort is stable: equal (user, time) pairs keep their file order.
        order = kept[np.lexsort((times[kept], users[kept]))]
        ordered_users, ordered_items = users[order], items[order]
        starts = np.flatnonzero(np.r_[True, ordered_users[1:] != ordered_users[:-1]])
        user_names, item_names = list(self.user_codes), list(self.item_codes)
        ordered_item_names = [item_names[i] for i in ordered_items.tolist()]
        bounds = np.r_[starts, ordered_users.size].tolist()
        return [(user_names[ordered_users[start]], ordered_item_names[start:end])
                for start, end in zip(bounds[:-1], bounds[1:])]

    def repeated_pairs(self, keep: np.ndarray) -> int:
        pairs = (np.frombuffer(self._users, np.int64)[keep] * max(len(self.item_codes), 1)
                 + np.frombuffer(self._items, np.int64)[keep])
        return int(pairs.size - np.unique(pairs).size)


def core_sequences(log: InteractionLog, metadata: dict[str, Any], path: Path) -> list[tuple[str, list[str]]]:
    """Apply the 5-core filter, record its effect in ``metadata``, return ordered sequences."""
    keep, rounds = log.core_filter(CORE)
    if not keep.any():
        raise BenchError(f"{path}: no users and items with {CORE} or more interactions: the {CORE}-core is empty")
    metadata["counts_before_5_core"] = log.counts()
    metadata["counts_after_5_core"] = log.counts(keep)
    metadata["5_core_rounds"] = rounds
    # Kept as interactions (P5/IDGenRec do not de-duplicate); counted so it is visible.
    metadata["repeated_user_item_pairs"] = log.repeated_pairs(keep)
    return log.sequences(keep)


def clean_text(value: Any) -> str:
    return _WHITESPACE.sub(" ", html.unescape(str(value))).strip()


def unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _card_value(card: dict[str, Any], key: str) -> Any:
    if key not in card:
        raise BenchError(f"dataset card '{card.get('name')}': lacks key '{key}'")
    return card[key]


def source_files(card: dict[str, Any], source: Path) -> dict[str, Path]:
    category = _card_value(card, "category")
    return {"reviews": source / f"reviews_{category}_5.json.gz", "meta": source / f"meta_{category}.json.gz"}


def ensure_downloaded(card: dict[str, Any], source: Path) -> dict[str, Path]:
    files = source_files(card, source)
    for kind, path in files.items():
        if not path.is_file():
            fetch(_card_value(card, f"{kind}_url"), path, card.get(f"{kind}_sha256"))
    return files


def verify_checksum(card: dict[str, Any], kind: str, path: Path, sha256: str | None) -> None:
    expected = card.get(f"{kind}_sha256")
    if expected is not None and sha256 != expected.lower():
        raise BenchError(f"{path}: sha256 {sha256} does not match the card's {kind}_sha256 "
                         f"{expected.lower()}; delete the file to download it again")


def read_reviews(path: Path) -> tuple[InteractionLog, str | None]:
    log = InteractionLog()
    lines = read_lines(path)
    for line_number, line in lines:
        if not line.strip():
            continue
        review = json_object(path, line_number, line)
        for key in ("reviewerID", "asin", "unixReviewTime"):
            if key not in review:
                raise BenchError(f"{path}:{line_number}: review lacks '{key}'")
        time = review["unixReviewTime"]
        if not isinstance(time, int) or isinstance(time, bool):
            raise BenchError(f"{path}:{line_number}: 'unixReviewTime' is not an integer: {time!r}")
        log.add(str(review["reviewerID"]), str(review["asin"]), time)
    if not len(log):
        raise BenchError(f"{path}: no reviews")
    return log, lines.sha256


def read_meta(path: Path, wanted: set[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The metadata of the ``wanted`` items; other items' lines are skipped unparsed."""

    def parse(line_number: int, line: str) -> dict[str, Any] | None:
        match = _ASIN_PATTERN.search(line)
        if match is not None and match.group(1) not in wanted:
            return None
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            reason = getattr(error, "msg", None) or str(error)
            raise BenchError(f"{path}:{line_number}: not a Python dict literal: {reason}") from None
        if not isinstance(record, dict):
            raise BenchError(f"{path}:{line_number}: expected a dict, found {type(record).__name__}")
        if "asin" not in record:
            raise BenchError(f"{path}:{line_number}: item metadata lacks 'asin'")
        paths = record.get("categories") or []
        if not (isinstance(paths, list) and all(isinstance(p, list) for p in paths)):
            raise BenchError(f"{path}:{line_number}: 'categories' is not a list of category paths")
        return record

    return keyed_records(path, wanted, "asin", parse)


def _category_paths(record: dict[str, Any]) -> list[list[str]]:
    return [[clean_text(name) for name in path] for path in record.get("categories") or []]


def item_text(record: dict[str, Any]) -> str:
    fields: list[tuple[str, str]] = []
    if record.get("title"):
        fields.append(("title", clean_text(record["title"])))
    if record.get("brand"):
        fields.append(("brand", clean_text(record["brand"])))
    categories = unique([name for path in _category_paths(record) for name in path])
    if categories:
        fields.append(("categories", ", ".join(categories)))
    price = record.get("price")
    if isinstance(price, (int, float)) and not isinstance(price, bool):
        fields.append(("price", f"{price:.2f}"))
    elif price:
        fields.append(("price", clean_text(price)))
    sales_rank = record.get("salesRank")
    if isinstance(sales_rank, dict) and sales_rank:
        fields.append(("sales rank", ", ".join(f"{rank} in {clean_text(category)}"
                                               for category, rank in sales_rank.items())))
    handled = {"title", "brand", "categories", "price", "salesRank", "description"}
    for key in sorted(set(record) - handled - SKIPPED_META_KEYS):
        value = record[key]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
            fields.append((key, clean_text(value)))
    if record.get("description"):
        fields.append(("description", clean_text(record["description"])))
    fields = [(key, value) for key, value in fields if value]
    return "; ".join(f"{key}: {value}" for key, value in fields)


def item_attributes(record: dict[str, Any]) -> list[str]:
    names = [name for path in _category_paths(record) for name in path[1:]]
    if record.get("brand"):
        names.append(clean_text(record["brand"]))
    return unique(names)


def read_amazon2014(card: dict[str, Any], source: Path) -> Dataset:
    source = Path(source)
    files = ensure_downloaded(card, source)
    metadata: dict[str, Any] = {"format": "amazon2014", "source": str(source.resolve()),
                                "category": card["category"], "sha256": {}}
    log, metadata["sha256"][files["reviews"].name] = read_reviews(files["reviews"])
    verify_checksum(card, "reviews", files["reviews"], metadata["sha256"][files["reviews"].name])
    sequences = core_sequences(log, metadata, files["reviews"])
    wanted = {item for _, items in sequences for item in items}
    records, metadata["sha256"][files["meta"].name] = read_meta(files["meta"], wanted)
    verify_checksum(card, "meta", files["meta"], metadata["sha256"][files["meta"].name])
    text: dict[str, str] = {}
    attributes: dict[str, list[str]] = {}
    for asin, record in records.items():
        text[asin] = item_text(record)
        attributes[asin] = item_attributes(record)
    metadata["items_without_metadata"] = len(wanted - set(records))
    metadata["item_text_fields"] = ("title; brand; categories; price; sales rank; other text fields; "
                                     "description (related, imUrl left out)")
    metadata["item_attribute_fields"] = "categories without their root; brand (as S3Rec)"
    return build_dataset(card["name"], sequences, {a: t for a, t in text.items() if t}, attributes, metadata)
