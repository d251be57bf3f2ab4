"""``bench table NAME --explain``: for each cell, the records behind it, their configuration,
the rule that chose them and the other configurations that fitted, with their validation scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.cell_selection import Candidate, Choice
from bench.identity import record_configuration
from bench.results import store_records
from bench.table_specs import TableSpec, table_registry
from bench.tables import WALL_CLOCK_MARK, rows_with_records, variant_label


def _flat(record: dict[str, Any]) -> dict[str, str]:
    return {f"{part}.{key}": json.dumps(value) for part, values in record_configuration(record).items()
            if isinstance(values, dict) for key, value in values.items()}


def config_difference(record: dict[str, Any], reference: dict[str, Any]) -> str:
    """The config keys where ``record`` differs from ``reference`` (``key=value``, record's value)."""
    mine, theirs = _flat(record), _flat(reference)
    keys = sorted(key for key in set(mine) | set(theirs) if mine.get(key) != theirs.get(key))
    return ", ".join(f"{key.split('.', 1)[1] if key.startswith('method.') else key}={mine.get(key, '(absent)')}"
                     for key in keys) or "nothing"


def _describe(candidate: Candidate) -> str:
    seeds = ",".join(str(record.get("seed")) for record in candidate.records)
    score = "no validation score" if candidate.validation is None else \
        f"validation NDCG@10 {candidate.validation:.4f} ({candidate.validation_users})"
    marks = (" default" if candidate.default else "") + (f" {WALL_CLOCK_MARK}wall-clock stop" if candidate.wall_clock
                                                         else "")
    replaced = f"; replaces the earlier run {', '.join(candidate.replaced)} of its configuration and seed" \
        if candidate.replaced else ""
    return f"{' + '.join(candidate.run_ids)} [config {candidate.digest}, seed {seeds}{marks}] {score}{replaced}"


def explain_choice(label: str, choice: Choice) -> list[str]:
    lines = [f"  {label}: {choice.rule}: {choice.reason}"]
    if choice.chosen is not None:
        lines.append(f"    chosen: {_describe(choice.chosen)}")
    reference = choice.chosen or (choice.candidates[0] if choice.candidates else None)
    for other in choice.candidates:
        if other is choice.chosen:
            continue
        differs = "" if other is reference else \
            f"; differs from {reference.digest} in {config_difference(other.records[0], reference.records[0])}"
        lines.append(f"    other:  {_describe(other)}{differs}")
    return lines


def explain_spec(spec: TableSpec, records: list[dict[str, Any]]) -> str:
    lines = [spec.title]
    for dataset, variant, choices in rows_with_records(spec, records):
        lines.append(f"{dataset}{variant_label(variant, False)}")
        for column, choice in zip(spec.columns, choices):
            if choice.candidates:
                lines.extend(explain_choice(column.label, choice))
    if len(lines) == 1:
        lines.append("(no runs in the store for this table yet)")
    return "\n".join(lines)


def explain_table(name: str, results_dir: Path) -> str:
    specs = table_registry().get(name)
    records = store_records(results_dir)
    return "\n\n".join(explain_spec(spec, records) for spec in specs)
