"""The results store: one self-describing JSON record per run under ``results/``.

A record stores its test targets' ranks; its per-user values are derived from them when it is
read (:mod:`bench.evaluation.stored_ranks`). Records made before that hold the per-user values
themselves and read as they are.

Records are written atomically (a killed run leaves a whole record or none). Tables and
``compare`` read nothing but these records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.evaluation.stored_ranks import per_user_fields
from bench.storage import atomic_write_text

SCHEMA_VERSION = 1
# The fields a record's ranks derive (bench.evaluation.stored_ranks.per_user_fields).
DERIVED_PREFIXES = ("per_user", "users_")
DEFAULT_RESULTS_DIR = Path("results")


def record_path(results_dir: Path, record: dict[str, Any]) -> Path:
    return results_dir / record["dataset"] / record["method"] / f"{record['run_id']}.json"


def write_record(results_dir: Path, record: dict[str, Any]) -> Path:
    path = record_path(results_dir, record)
    try:
        atomic_write_text(path, json.dumps(record, indent=1, default=_to_json))
    except BenchError as error:  # a read-only store, a full disk: no part of the record is left
        raise BenchError(f"run record not written: {error}; the run's work folder keeps what it trained, "
                         "so the same command writes the record once the store can be written") from None
    return path


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"cannot store {type(value).__name__} in a run record")


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: run record not found") from None
    except json.JSONDecodeError as error:
        raise BenchError(f"{path}:{error.lineno}: not a valid run record: {error.msg}") from None
    for key in ("run_id", "method", "dataset", "metrics", "split"):
        if key not in record:
            raise BenchError(f"{path}: run record lacks key '{key}'")
    if "ranks" in record:  # per-user values derive from the stored ranks; older records hold them
        return StoredRecord(record, path)
    if "per_user" not in record:
        raise BenchError(f"{path}: run record lacks key 'ranks' (or, before it, 'per_user')")
    return record


class StoredRecord(dict):
    """A record read from the store whose per-user fields (``per_user``, ``users_warm``, ...) are
    derived from its ranks the first time one is asked for: tables that read only the means of
    thousands of records do not decode them all. Every way of reading a key or listing the keys
    derives them first, so it reads like the record it stands for."""

    def __init__(self, stored: dict[str, Any], path: Path) -> None:
        super().__init__(stored)
        self._path, self._derived = path, False

    def _derive(self) -> None:
        if self._derived:
            return
        self._derived = True
        try:
            self.update(per_user_fields(super().__getitem__("ranks")))
        except (BenchError, KeyError, TypeError) as error:
            raise BenchError(f"{self._path}: run record's 'ranks' cannot be read: {error}") from None

    def __missing__(self, key: str) -> Any:
        if self._derived or not str(key).startswith(DERIVED_PREFIXES):
            raise KeyError(key)
        self._derive()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if not self._derived and str(key).startswith(DERIVED_PREFIXES):
            self._derive()
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __iter__(self):
        self._derive()
        return super().__iter__()

    def keys(self):
        self._derive()
        return super().keys()

    def items(self):
        self._derive()
        return super().items()

    def values(self):
        self._derive()
        return super().values()

    def __len__(self) -> int:
        self._derive()
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self._derive()
        if isinstance(other, StoredRecord):
            other._derive()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def store_records(results_dir: Path) -> list[dict[str, Any]]:
    """:func:`all_records` of a store that must exist (the tables, ``bench claims``)."""
    if not Path(results_dir).exists():
        raise BenchError(f"{results_dir}: results store not found")
    return all_records(results_dir)


def all_records(results_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(Path(results_dir).rglob("*.json")):
        record = read_record(path)
        record["_path"] = str(path)
        records.append(record)
    return records


def find_record(results_dir: Path, reference: str) -> dict[str, Any]:
    """A record by path, or by run id (or a unique prefix of one) within the store."""
    path = Path(reference)
    if path.suffix == ".json" and path.exists():
        return read_record(path)
    matches = [r for r in all_records(results_dir) if r["run_id"].startswith(reference)]
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs"
        raise BenchError(f"'{reference}': {what} in {results_dir} match this path or run id")
    return matches[0]


# The groups of test targets a record measures (``per_user`` and ``per_user_<group>``), by the name
# `bench compare --targets` gives them; docs/evaluation.md.
TARGET_GROUPS = {"all": "", "warm": "warm", "cold": "cold", "warm-in-group": "warm_in_group",
                 "cold-in-group": "cold_in_group", "repeat": "repeat", "novel": "novel"}
_GROUP_TEXT = {"warm": "warm targets", "cold": "cold targets",
               "warm_in_group": "warm targets ranked among warm items",
               "cold_in_group": "cold targets ranked among cold items",
               "repeat": "repeat targets (items in the user's history)", "novel": "novel targets"}


def per_user(record: dict[str, Any], metric: str, group: str = "") -> np.ndarray:
    """A record's per-user values of ``metric``: over all targets, or over one group of them
    (``warm``, ``cold``, ``warm_in_group``, ``cold_in_group``: the users of ``users_warm`` or ``users_cold``;
    ``repeat``, ``novel``: of ``users_repeat``, ``users_novel``)."""
    try:
        return np.asarray(record[f"per_user_{group}" if group else "per_user"][metric], dtype=np.float64)
    except KeyError:
        what = f" of its {_GROUP_TEXT[group]}" if group else ""
        hint = " (a record made before these fields: run its command again to re-evaluate it)" \
            if group.endswith("in_group") else ""
        raise BenchError(f"run {record['run_id']} has no per-user values for '{metric}'{what}{hint}") from None
