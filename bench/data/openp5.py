"""The IDGenRec/OpenP5 folder format (what ``../shared/data/amazon-*`` holds).

``user_sequence.txt``: ``USER ITEM ITEM ...`` per line, chronological. Optional:
``item_generative_indexing_phase_0.txt`` (``ITEM word word ...``, the short title-like
text), ``datamaps.json`` (raw id <-> 1-based integer id, and attribute names) and
``item2attributes.json`` (integer item id -> attribute ids) and ``item_plain_text.txt``
(``ITEM title: ...; categories: a, b, c``, IDGenRec's own item-text file: real titles and
category paths). An item's text is its ``item_plain_text.txt`` line where the folder has
one; otherwise it is assembled as ``title: <phase-0 words>; attributes: <names>``; where
attribute names are missing (Toys) the attribute ids stand in for FDSA/S3Rec and are left
out of the text. The dataset's metadata names the fields its text came from.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.data.dataset import Dataset, build_dataset
from bench.errors import BenchError

SEQUENCE_FILE = "user_sequence.txt"
ITEM_TEXT_FILE = "item_generative_indexing_phase_0.txt"
PLAIN_TEXT_FILE = "item_plain_text.txt"


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


def read_plain_text(path: Path) -> dict[str, str]:
    """``ITEM text...`` per line: the text after the item id, as written (empty lines skipped)."""
    text: dict[str, str] = {}
    with path.open(encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if len(fields) < 2:
                raise BenchError(f"{path}:{line_number}: item '{fields[0]}' has no text")
            if fields[0] in text:
                raise BenchError(f"{path}:{line_number}: item '{fields[0]}' appears twice")
            text[fields[0]] = fields[1]
    return text


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
    plain_path = directory / PLAIN_TEXT_FILE
    plain = read_plain_text(plain_path) if plain_path.is_file() else {}
    text: dict[str, str] = {}
    items = {item for _, items in sequences for item in items}
    for raw in items:
        if raw in plain:
            text[raw] = plain[raw]
            continue
        parts = []
        if raw in titles:
            parts.append(f"title: {titles[raw]}")
        if named.get(raw):
            parts.append(f"attributes: {', '.join(named[raw])}")
        text[raw] = "; ".join(parts) if parts else f"item: {raw}"
    from_plain = len(items.intersection(plain))
    phase_0 = "title (IDGenRec phase-0 textual id words); attributes (names where known)"
    if from_plain == len(items):
        fields = f"title; categories ({PLAIN_TEXT_FILE})"
    elif from_plain:
        fields = f"title; categories ({PLAIN_TEXT_FILE}) for {from_plain} items, else {phase_0}"
    else:
        fields = phase_0
    metadata = {"format": "openp5", "source": str(directory.resolve()),
                "sequence_file": str(directory / SEQUENCE_FILE), "item_text_fields": fields}
    return build_dataset(name, sequences, text, attributes, metadata)
