"""RecBole atomic files: the format users bring their own data in.

A folder holding ``NAME.inter`` (or the published-split trio ``NAME.train.inter``,
``NAME.valid.inter``, ``NAME.test.inter``, RecBole's benchmark-file convention) and,
optionally, ``NAME.item``. Every file is tab-separated with a typed header
(``field:type``, type one of RecBole's ``token``, ``token_seq``, ``float``, ``float_seq``).

- ``.inter``: ``user_id:token`` and ``item_id:token`` are required; ``timestamp:float``
  orders each user's sequence (stable sort: ties keep file order and are counted);
  ``rating:float`` is needed only by ``data.rating_threshold``. Without timestamps the
  file order is the sequence order.
- ``.item``: ``item_id:token`` plus text fields (``token``/``token_seq``), assembled as
  ``key: value; key: value``. Items it names that no interaction mentions are counted and
  warned about, not an error.

Bad input stops with one line naming the file, line and column; nothing is cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from bench.config import DataConfig
from bench.data.dataset import Dataset, build_dataset
from bench.data.split import TEST, TRAIN, VALID
from bench.errors import BenchError

TYPES = ("token", "token_seq", "float", "float_seq")
TEXT_TYPES = ("token", "token_seq")
PHASE_FILES = (("train", TRAIN), ("valid", VALID), ("test", TEST))


@dataclasses.dataclass(frozen=True)
class Table:
    """One atomic file: column name -> values (strings; floats for float columns), per row."""

    path: Path
    fields: dict[str, str]  # name -> type, in header order
    columns: dict[str, list[Any]]
    line_numbers: list[int]

    def __len__(self) -> int:
        return len(self.line_numbers)


@dataclasses.dataclass(frozen=True)
class AtomicFiles:
    stem: str
    inter: tuple[Path, ...]  # one file, or train/valid/test
    item: Path | None

    @property
    def is_published_split(self) -> bool:
        return len(self.inter) == 3


def _stems(directory: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(directory.glob("*.inter")):
        stem, _, _ = path.name[:-len(".inter")].partition(".")
        found.setdefault(stem, []).append(path.name)
    return found


def is_atomic_folder(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*.inter"))


def find_atomic_files(directory: Path, name: str) -> AtomicFiles:
    """The folder's atomic files: those of ``NAME`` if present, else of its only stem."""
    stems = _stems(directory)
    if not stems:
        raise BenchError(f"{directory}: no RecBole atomic file (NAME.inter) found")
    if name in stems:
        stem = name
    elif len(stems) == 1:
        stem = next(iter(stems))
    else:
        raise BenchError(f"{directory}: atomic files of several datasets ({', '.join(sorted(stems))}); "
                         f"name one of them with --dataset")
    single = directory / f"{stem}.inter"
    split_files = tuple(directory / f"{stem}.{phase}.inter" for phase, _ in PHASE_FILES)
    present = [path for path in split_files if path.is_file()]
    if present and single.is_file():
        raise BenchError(f"{directory}: both {single.name} and a published split ({present[0].name}); keep one")
    if present and len(present) < 3:
        missing = [path.name for path in split_files if not path.is_file()]
        raise BenchError(f"{directory}: published split incomplete, missing {', '.join(missing)}")
    item = directory / f"{stem}.item"
    return AtomicFiles(stem=stem, inter=split_files if present else (single,),
                       item=item if item.is_file() else None)


def _header(path: Path, line: str, required: tuple[str, ...]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for column, entry in enumerate(line.rstrip("\r\n").split("\t"), start=1):
        name, _, type_name = entry.partition(":")
        if type_name not in TYPES:
            raise BenchError(f"{path}:1:{column}: unknown type '{type_name}' in header field '{entry}'; "
                             f"RecBole's types are {', '.join(TYPES)}")
        if name in fields:
            raise BenchError(f"{path}:1:{column}: field '{name}' appears twice in the header")
        fields[name] = type_name
    for entry in required:
        name, _, type_name = entry.partition(":")
        if fields.get(name) != type_name:
            raise BenchError(f"{path}:1: missing required column '{entry}' (header: {line.strip()})")
    return fields


def read_table(path: Path, required: tuple[str, ...]) -> Table:
    """Parse one atomic file, checking header types, row widths and numbers."""
    with path.open(encoding="utf-8") as stream:
        header_line = stream.readline()
        if not header_line.strip():
            raise BenchError(f"{path}:1: empty file, expected a header of field:type names")
        fields = _header(path, header_line, required)
        names = list(fields)
        numeric = [fields[name] == "float" for name in names]
        columns: dict[str, list[Any]] = {name: [] for name in names}
        line_numbers: list[int] = []
        for line_number, line in enumerate(stream, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            values = line.split("\t")
            if len(values) != len(names):
                column = min(len(values), len(names)) + 1
                raise BenchError(f"{path}:{line_number}:{column}: expected {len(names)} tab-separated fields "
                                 f"({', '.join(names)}), found {len(values)}")
            for column, (name, value, is_float) in enumerate(zip(names, values, numeric), start=1):
                if is_float:
                    try:
                        columns[name].append(float(value))
                    except ValueError:
                        raise BenchError(f"{path}:{line_number}:{column}: '{value}' in column "
                                         f"'{name}:float' is not a number") from None
                else:
                    columns[name].append(value)
            line_numbers.append(line_number)
    if not line_numbers:
        raise BenchError(f"{path}:2: no rows after the header")
    return Table(path=path, fields=fields, columns=columns, line_numbers=line_numbers)


def _rows(table: Table) -> list[tuple[str, str, float | None, float | None]]:
    users, items = table.columns["user_id"], table.columns["item_id"]
    times = table.columns.get("timestamp") if table.fields.get("timestamp") == "float" else None
    ratings = table.columns.get("rating") if table.fields.get("rating") == "float" else None
    return [(user, item, times[row] if times else None, ratings[row] if ratings else None)
            for row, (user, item) in enumerate(zip(users, items))]


def _filter(rows: list, options: DataConfig, path: Path, facts: dict[str, Any]) -> list:
    if options.rating_threshold is not None:
        if rows and rows[0][3] is None:
            raise BenchError(f"{path}: data.rating_threshold needs a rating:float column")
        kept = [row for row in rows if row[3] >= options.rating_threshold]
        facts["dropped_below_rating_threshold"] = len(rows) - len(kept)
        rows = kept
    if options.k_core > 0:
        rounds = 0
        while True:
            user_count: dict[str, int] = {}
            item_count: dict[str, int] = {}
            for user, item, *_ in rows:
                user_count[user] = user_count.get(user, 0) + 1
                item_count[item] = item_count.get(item, 0) + 1
            kept = [row for row in rows if user_count[row[0]] >= options.k_core and item_count[row[1]] >= options.k_core]
            if len(kept) == len(rows):
                break
            rows, rounds = kept, rounds + 1
        facts["k_core"] = {"k": options.k_core, "rounds": rounds, "interactions_left": len(rows)}
    if not rows:
        raise BenchError(f"{path}: no interaction is left after filtering ({options})")
    return rows


def _sequences(rows: list, phase_of_row: list[int]) -> tuple[list, list, list, dict[str, int]]:
    """Group rows by user (first-appearance order); within a user by phase, then time (stable)."""
    grouped: dict[str, list[tuple[int, float, int, str]]] = {}
    for position, ((user, item, time, _), phase) in enumerate(zip(rows, phase_of_row)):
        grouped.setdefault(user, []).append((phase, time if time is not None else 0.0, position, item))
    sequences, timestamps, phases = [], [], []
    ties = users_with_ties = 0
    timed = bool(rows) and rows[0][2] is not None
    for user, entries in grouped.items():
        entries.sort(key=lambda entry: (entry[0], entry[1], entry[2]))  # position keeps the sort stable
        sequences.append((user, [entry[3] for entry in entries]))
        timestamps.append([entry[1] for entry in entries])
        phases.append([entry[0] for entry in entries])
        if timed:
            tied = sum(1 for a, b in zip(entries, entries[1:]) if a[0] == b[0] and a[1] == b[1])
            ties += tied
            users_with_ties += tied > 0
    facts = {"timestamp_ties": ties, "users_with_timestamp_ties": users_with_ties} if timed else {}
    return sequences, (timestamps if timed else None), phases, facts


def _item_text(files: AtomicFiles, known_items: set[str], facts: dict[str, Any]) -> dict[str, str]:
    if files.item is None:
        return {}
    table = read_table(files.item, ("item_id:token",))
    text_fields = [name for name, type_name in table.fields.items() if name != "item_id" and type_name in TEXT_TYPES]
    text: dict[str, str] = {}
    unknown = 0
    for row, item in enumerate(table.columns["item_id"]):
        if item not in known_items:
            unknown += 1
            continue
        parts = [f"{name}: {table.columns[name][row].strip()}" for name in text_fields
                 if table.columns[name][row].strip()]
        if parts:
            text[item] = "; ".join(parts)
    facts["item_text_fields"] = text_fields
    facts["items_with_text"] = len(text)
    if unknown:
        facts["item_file_unknown_items"] = unknown
        facts.setdefault("warnings", []).append(
            f"{files.item}: {unknown} items named here occur in no interaction; they are ignored")
    return text


def _attributes_from(options: DataConfig, known_items: set[str],
                     facts: dict[str, Any]) -> tuple[dict[str, list[str]], list[Path]]:
    """``data.item_attributes_from``: the attributes another folder (IDGenRec/OpenP5) gives these
    items, and the files they were read from."""
    if options.item_attributes_from is None:
        return {}, []
    from bench.data.openp5 import ATTRIBUTE_FILES, read_item_attributes

    folder = Path(options.item_attributes_from)
    paths = [folder / name for name in ATTRIBUTE_FILES]
    if not all(path.is_file() for path in paths):
        raise BenchError(f"config key 'data.item_attributes_from': {folder} holds no "
                         f"{' and '.join(ATTRIBUTE_FILES)}")
    attributes, _ = read_item_attributes(folder)
    kept = {item: names for item, names in attributes.items() if item in known_items}
    if not kept:
        raise BenchError(f"config key 'data.item_attributes_from': {folder} gives attributes to none of this "
                         "dataset's items (do the raw item IDs match?)")
    facts["item_attributes_from"] = str(folder.resolve())
    facts["items_with_attributes"] = len(kept)
    return kept, paths


def files_fingerprint(paths: list[Path]) -> str:
    """Content digest of the files read: names the exact data a record was computed on."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def read_atomic_folder(name: str, directory: Path, options: DataConfig = DataConfig()) -> Dataset:
    files = find_atomic_files(directory, name)
    facts: dict[str, Any] = {}
    if files.is_published_split and options.filters_rows():
        raise BenchError(f"{directory}: data.rating_threshold and data.k_core do not apply to a published split "
                         f"({files.stem}.train/valid/test.inter): it is read as given")
    rows: list = []
    phase_of_row: list[int] = []
    timed: set[bool] = set()
    for path, (_, phase) in zip(files.inter, PHASE_FILES if files.is_published_split else ((None, TRAIN),)):
        table = read_table(path, ("user_id:token", "item_id:token"))
        timed.add(table.fields.get("timestamp") == "float")
        table_rows = _rows(table)
        if not files.is_published_split:
            table_rows = _filter(table_rows, options, path, facts)
        rows.extend(table_rows)
        phase_of_row.extend([phase] * len(table_rows))
    if len(timed) > 1:
        raise BenchError(f"{directory}: some of the published split's files have a timestamp:float column and "
                         "some do not")
    sequences, timestamps, phases, order_facts = _sequences(rows, phase_of_row)
    facts.update(order_facts)
    known_items = {item for _, item, *_ in rows}
    text = _item_text(files, known_items, facts)
    attributes, attribute_files = _attributes_from(options, known_items, facts)
    read = list(files.inter) + ([files.item] if files.item else []) + attribute_files
    metadata = {"format": "atomic", "source": str(directory.resolve()),
                "sequence_file": str(files.inter[0]), "files": [path.name for path in read],
                "files_fingerprint": files_fingerprint(read),
                "order": "timestamp (stable sort)" if timestamps is not None else "file order",
                "published_split": files.is_published_split, **facts}
    if not options.is_default():
        metadata["data_options"] = dataclasses.asdict(options)
    return build_dataset(name, sequences, text, attributes, metadata, timestamps=timestamps,
                         phases=phases if files.is_published_split else None,
                         min_interactions=1 if files.is_published_split else 3)
