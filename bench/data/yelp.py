"""The Yelp Open Dataset (official JSON dump), as used by P5 and IDGenRec.

Yelp's licence requires each user to download the dump by hand, so nothing is fetched:
the two files named by the card must be in the dataset folder.

- ``yelp_academic_dataset_review.json``: one JSON object per line (``user_id``,
  ``business_id``, ``date`` as ``YYYY-MM-DD HH:MM:SS``, ``stars``, ``text``, ...).
- ``yelp_academic_dataset_business.json``: one JSON object per line (``business_id``,
  ``name``, ``city``, ``state``, ``categories`` as one comma-separated string,
  ``stars``, ``attributes``, ...).

Optional card keys ``start_date``/``end_date`` (``"YYYY-MM-DD"``, inclusive) keep only
the reviews in that window before the 5-core filter; P5 and IDGenRec use one year of
reviews rather than the whole dump. The 5-core filter, chronological order (ties keep
the file order) and the recorded counts are those of :mod:`bench.data.amazon`.

Item text: ``name``, ``city``, ``state``, ``categories``, ``stars`` (the business's
descriptive fields; address, coordinates, opening hours and the nested ``attributes``
are left out). Item attributes (FDSA, S3Rec): the business's categories.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from bench.data.amazon import InteractionLog, clean_text, core_sequences, unique, verify_checksum
from bench.data.dataset import Dataset, build_dataset
from bench.data.download import json_object, keyed_records, read_lines
from bench.errors import BenchError

DOWNLOAD_PAGE = "https://www.yelp.com/dataset"
TEXT_FIELDS = ("name", "city", "state", "categories", "stars")
_EPOCH = datetime.datetime(1970, 1, 1)
_SECOND = datetime.timedelta(seconds=1)


def _card_date(card: dict[str, Any], key: str) -> datetime.date | None:
    value = card.get(key)
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise BenchError(f"dataset card '{card.get('name')}': '{key}' is not a YYYY-MM-DD date: {value!r}") from None


def source_files(card: dict[str, Any], source: Path) -> dict[str, Path]:
    files = {}
    for kind, key in (("reviews", "reviews_file"), ("business", "business_file")):
        if key not in card:
            raise BenchError(f"dataset card '{card.get('name')}': lacks key '{key}'")
        files[kind] = source / card[key]
    missing = [path for path in files.values() if not path.is_file()]
    if missing:
        names = " and ".join(path.name for path in missing)
        raise BenchError(f"{missing[0]}: not found; Yelp's licence requires a manual download: get the "
                         f"JSON dump from {DOWNLOAD_PAGE}, extract {names} from the archive and put "
                         f"{'them' if len(missing) > 1 else 'it'} in {source.resolve()}")
    return files


def read_reviews(path: Path, start: datetime.date | None,
                 end: datetime.date | None) -> tuple[InteractionLog, str | None, int]:
    log = InteractionLog()
    outside_window = 0
    lines = read_lines(path)
    for line_number, line in lines:
        if not line.strip():
            continue
        review = json_object(path, line_number, line)
        for key in ("user_id", "business_id", "date"):
            if key not in review:
                raise BenchError(f"{path}:{line_number}: review lacks '{key}'")
        try:
            moment = datetime.datetime.fromisoformat(str(review["date"]))
        except ValueError:
            raise BenchError(f"{path}:{line_number}: 'date' is not YYYY-MM-DD HH:MM:SS: "
                             f"{review['date']!r}") from None
        if (start is not None and moment.date() < start) or (end is not None and moment.date() > end):
            outside_window += 1
            continue
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        # Seconds since the epoch, computed without the local time zone (which would
        # reorder reviews around a daylight-saving change).
        seconds = (moment - _EPOCH) // _SECOND
        log.add(str(review["user_id"]), str(review["business_id"]), seconds)
    if not len(log):
        raise BenchError(f"{path}: no reviews" + (" in the card's date window" if outside_window else ""))
    return log, lines.sha256, outside_window


def read_businesses(path: Path, wanted: set[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    def parse(line_number: int, line: str) -> dict[str, Any]:
        record = json_object(path, line_number, line)
        if "business_id" not in record:
            raise BenchError(f"{path}:{line_number}: business lacks 'business_id'")
        categories = record.get("categories")
        if categories is not None and not isinstance(categories, str):
            raise BenchError(f"{path}:{line_number}: 'categories' is not a comma-separated string")
        return record

    return keyed_records(path, wanted, "business_id", parse)


def business_categories(record: dict[str, Any]) -> list[str]:
    return unique([clean_text(name) for name in (record.get("categories") or "").split(",")])


def business_text(record: dict[str, Any]) -> str:
    fields = []
    for key in TEXT_FIELDS:
        value = record.get(key)
        if key == "categories":
            value = ", ".join(business_categories(record))
        elif isinstance(value, float):
            value = f"{value:g}"
        if value is not None and not isinstance(value, bool) and clean_text(value):
            fields.append(f"{key}: {clean_text(value)}")
    return "; ".join(fields)


def read_yelp(card: dict[str, Any], source: Path) -> Dataset:
    source = Path(source)
    files = source_files(card, source)
    start, end = _card_date(card, "start_date"), _card_date(card, "end_date")
    metadata: dict[str, Any] = {"format": "yelp", "source": str(source.resolve()), "sha256": {},
                                "date_window": [str(start) if start else None, str(end) if end else None]}
    log, sha256, metadata["reviews_outside_date_window"] = read_reviews(files["reviews"], start, end)
    metadata["sha256"][files["reviews"].name] = sha256
    verify_checksum(card, "reviews", files["reviews"], sha256)
    sequences = core_sequences(log, metadata, files["reviews"])
    wanted = {item for _, items in sequences for item in items}
    records, sha256 = read_businesses(files["business"], wanted)
    metadata["sha256"][files["business"].name] = sha256
    verify_checksum(card, "business", files["business"], sha256)
    text = {business: business_text(record) for business, record in records.items()}
    attributes = {business: business_categories(record) for business, record in records.items()}
    metadata["items_without_metadata"] = len(wanted - set(records))
    metadata["item_text_fields"] = "name; city; state; categories; stars"
    metadata["item_attribute_fields"] = "categories"
    return build_dataset(card["name"], sequences, {b: t for b, t in text.items() if t}, attributes, metadata)
