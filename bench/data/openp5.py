"""The IDGenRec/OpenP5 folder format (what ``../shared/data/amazon-*`` holds).

``user_sequence.txt``: ``USER ITEM ITEM ...`` per line, chronological. Optional:
``item_generative_indexing_phase_0.txt`` (``ITEM word word ...``, the short title-like
text), ``datamaps.json`` (raw id <-> 1-based integer id, and attribute names) and
``item2attributes.json`` (integer item id -> attribute ids). Item text is assembled
as ``title: <words>; attributes: <names>``; where attribute names are missing (Toys)
the attribute ids stand in for FDSA/S3Rec and are left out of the text.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.data.dataset import Dataset, build_dataset
from bench.errors import BenchError

SEQUENCE_FILE = "user_sequence.txt"
ITEM_TEXT_FILE = "item_generative_indexing_phase_0.txt"


def is_openp5_folder(directory: Path) -> bool:
    return (directory / SEQUENCE_FILE).is_file()


def read_user_sequences(path: Path) -> list[tuple[str, list[str]]]:
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    sequences: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            fields = line.split()
            if not fields:
                continue
            user, items = fields[0], fields[1:]
            if not items:
                raise BenchError(f"{path}:{line_number}: user '{user}' has no items")
            if user in seen:
                raise BenchError(f"{path}:{line_number}: user '{user}' appears twice")
            seen.add(user)
            sequences.append((user, items))
    if not sequences:
        raise BenchError(f"{path}: no user sequences")
    return sequences


def _read_words(path: Path) -> dict[str, str]:
    words: dict[str, str] = {}
    if path.is_file():
        with path.open(encoding="utf-8") as stream:
            for line in stream:
                fields = line.split()
                if len(fields) >= 2:
                    words[fields[0]] = " ".join(fields[1:])
    return words


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BenchError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None


ATTRIBUTE_FILES = ("item2attributes.json", "datamaps.json")


def read_item_attributes(directory: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Raw item ID -> its attributes (a name, or ``attribute_<id>`` where the folder names none),
    and -> its named attributes only (what item text shows)."""
    item_to_attribute_ids, datamaps = (_read_json(directory / name) for name in ATTRIBUTE_FILES)
    id_to_item = datamaps.get("id2item", {})
    attribute_names = datamaps.get("id2attribute", {})
    attributes: dict[str, list[str]] = {}
    named: dict[str, list[str]] = {}
    for integer_id, attribute_ids in item_to_attribute_ids.items():
        raw = id_to_item.get(str(integer_id))
        if raw is None:
            continue
        attributes[raw] = [attribute_names.get(str(a), f"attribute_{a}") for a in attribute_ids]
        named[raw] = [attribute_names[str(a)] for a in attribute_ids if str(a) in attribute_names]
    return attributes, named


def read_openp5_folder(name: str, directory: Path) -> Dataset:
    sequences = read_user_sequences(directory / SEQUENCE_FILE)
    titles = _read_words(directory / ITEM_TEXT_FILE)
    attributes, named = read_item_attributes(directory)
    text: dict[str, str] = {}
    for raw in {item for _, items in sequences for item in items}:
        parts = []
        if raw in titles:
            parts.append(f"title: {titles[raw]}")
        if named.get(raw):
            parts.append(f"attributes: {', '.join(named[raw])}")
        text[raw] = "; ".join(parts) if parts else f"item: {raw}"
    metadata = {"format": "openp5", "source": str(directory.resolve()),
                "sequence_file": str(directory / SEQUENCE_FILE),
                "item_text_fields": "title (IDGenRec phase-0 textual id words); attributes (names where known)"}
    return build_dataset(name, sequences, text, attributes, metadata)
