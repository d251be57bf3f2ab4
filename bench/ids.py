"""Inspecting the textual IDs of a run (IDGenRec's Figure 3): for sampled items, their text,
initial ID and final ID, and all of a run's IDs exported next to its record.

A method with textual IDs writes a tab-separated table ``item, initial_id, final_id,
text`` into its work folder and records its path as ``method_metadata.ids_file``. Work
folders live in the cache and may be deleted; the export next to the record
(``<run_id>.ids.tsv``) is kept with the results, and is read first when it exists.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.results import all_records, find_record, record_path
from bench.storage import atomic_write_text

COLUMNS = ("item", "initial_id", "final_id", "text")


def find_run(results_dir: Path, dataset: str, run: str | None, method: str) -> dict[str, Any]:
    """The given run, or the newest run of ``method`` on ``dataset`` that has an IDs table."""
    if run is not None:
        return find_record(results_dir, run)
    runs = [record for record in all_records(results_dir) if record["dataset"] == dataset
            and record["method"] == method and record.get("method_metadata", {}).get("ids_file")]
    if not runs:
        raise BenchError(f"no run of '{method}' on '{dataset}' with textual IDs in {results_dir}")
    return max(runs, key=lambda record: record["started_at"])


def export_path(results_dir: Path, record: dict[str, Any]) -> Path:
    return record_path(results_dir, record).with_suffix(".ids.tsv")


def read_ids(results_dir: Path, record: dict[str, Any]) -> list[dict[str, str]]:
    exported = export_path(results_dir, record)
    source = exported if exported.is_file() else record.get("method_metadata", {}).get("ids_file")
    if not source:
        raise BenchError(f"run {record['run_id']} ({record['method']}) recorded no IDs table")
    source = Path(source)
    if not source.is_file():
        raise BenchError(f"{source}: the IDs table of run {record['run_id']} is gone (work folders live in the "
                         "cache); run the same command again to rebuild it")
    with open(source, newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise BenchError(f"{source}: expected the columns {', '.join(COLUMNS)}")
    return rows


def sample_rows(rows: list[dict[str, str]], count: int, seed: int) -> list[dict[str, str]]:
    chosen = np.sort(np.random.default_rng(seed).choice(len(rows), size=min(count, len(rows)), replace=False))
    return [rows[index] for index in chosen.tolist()]


def write_ids(path: Path, rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
