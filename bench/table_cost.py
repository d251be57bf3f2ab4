"""``bench table NAME --cost``: the core-hours behind a table, per row, from its records
(:mod:`bench.run_cost` reads each record's times).

"Chosen" counts the records that fill the row's cells (what the table shows); "all" adds the
other configurations that fitted a cell and lost on validation (what the row took to make). A
record that fills several cells counts once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from tabulate import tabulate

from bench.results import store_records
from bench.run_cost import RunCost, run_cost
from bench.table_specs import TableSpec, table_registry
from bench.tables import rows_with_records, variant_label

HEADERS = ("Row", "Cells filled", "Chosen: training h", "Chosen: test h", "Chosen: CPU-measured",
           "All fitting records h")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def _summed(records: Iterable[dict[str, Any]]) -> RunCost:
    costs = [run_cost(record) for record in {record["run_id"]: record for record in records}.values()]
    return RunCost(sum(c.training for c in costs), sum(c.test for c in costs), sum(c.cpu for c in costs))


def _row(label: str, filled: str, chosen: list[dict[str, Any]], fitting: list[dict[str, Any]]) -> list[str]:
    cost = _summed(chosen)
    return [label, filled, _hours(cost.training), _hours(cost.test), f"{cost.cpu_share:.0%}",
            _hours(_summed(fitting).total)]


def cost_spec(spec: TableSpec, records: list[dict[str, Any]]) -> str:
    rows, every_chosen, every_fitting = [], [], []
    for dataset, variant, choices in rows_with_records(spec, records):
        chosen = [r for choice in choices if choice.chosen for r in choice.chosen.records]
        fitting = [r for choice in choices for candidate in choice.candidates for r in candidate.records]
        filled = sum(choice.chosen is not None for choice in choices)
        rows.append(_row(f"{dataset}{variant_label(variant, False)}", f"{filled} of {len(choices)}", chosen, fitting))
        every_chosen += chosen
        every_fitting += fitting
    if not rows:
        return f"{spec.title}\n\n(no runs in the store for this table yet)"
    rows.append(_row("All rows", "", every_chosen, every_fitting))
    return f"{spec.title}\n\n{tabulate(rows, headers=HEADERS, tablefmt='github', disable_numparse=True)}"


def cost_table(name: str, results_dir: Path) -> str:
    specs = table_registry().get(name)
    records = store_records(results_dir)
    note = ("Core-hours of one-thread processes (bench/run_cost.py): training with its validation, across "
            "resumes, then the test rankings. CPU-measured: the share of the chosen records' hours that is "
            "CPU time; the rest is wall-clock time, which a loaded machine inflates.")
    return "\n\n".join([cost_spec(spec, records) for spec in specs] + [note])
