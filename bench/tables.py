"""Paper tables rendered from the results store (and nothing else).

The tables are data (:mod:`bench.table_specs`, ``bench/reference/tables.toml``): columns name a
method and the config values a record must have, rows are dataset x metric, and the paper
table whose numbers go beside the cells with ``--with-paper``. Each cell's records are chosen
on validation, never by recency (:mod:`bench.cell_selection`; ``--explain`` shows each choice).
In each row the best value is bold and the second underlined; a star marks a best value whose
paired t-test over users against the second best has p < 0.05; ``Improv.`` is the best value's
relative gain over the second best; † marks a cell whose training a wall-clock budget stopped.

When the chosen configuration has several seeds, the cell is their mean ± standard deviation,
and the test runs over users on the seed-averaged per-user values.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from bench.cell_selection import Choice, choose, is_diagnostic
from bench.data.prepare import ID_ORDER_WARNING_SHARE
from bench.errors import BenchError
from bench.reality_check import reality_check_note
from bench.results import TARGET_GROUPS, store_records
from bench.statistics import ALPHA, paired_tests, seed_averaged
from bench.table_specs import Column, TableSpec, table_registry

__all__ = ["Column", "TableSpec", "table_registry", "render_table", "table_rows"]

METRICS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")
PAPER_DATASETS = {"sports": "Sports", "beauty": "Beauty", "toys": "Toys", "yelp": "Yelp"}
# Blocks of targets of SETRec's Table 1 (all, warm, cold) by their record field suffix.
# Warm and cold targets are ranked among all items ("Warm", "Cold") and, SETRec's protocol,
# within their own group ("Warm among warm", "Cold among cold": the record's *_in_group fields).
TARGET_BLOCKS = {"All": "", "Warm": "_warm", "Cold": "_cold", "Warm among warm": "_warm_in_group",
                 "Cold among cold": "_cold_in_group", "Repeat": "_repeat", "Novel": "_novel"}
# `bench table --targets`: a table's rows restricted to one block of the test targets.
TABLE_TARGETS = {"all": None, "repeat": "Repeat", "novel": "Novel"}
# The labels of bench/reference/setrec_paper_tables.csv: the paper ranked warm (cold) targets
# among warm (cold) items, so its numbers sit beside those rows only.
PAPER_BLOCKS = {"All": "All", "Warm among warm": "Warm", "Cold among cold": "Cold"}
INFERENCE_SECONDS = "Inference seconds (all users)"
WALL_CLOCK_MARK = "†"


def paper_numbers() -> dict[tuple[str, str, str, str], float]:
    """The papers' numbers: every ``bench/reference/*_paper_tables.csv``, by (table, dataset, label, metric)."""
    numbers = {}
    files = sorted((entry for entry in resources.files("bench").joinpath("reference").iterdir()
                    if entry.name.endswith("_paper_tables.csv")), key=lambda entry: entry.name)
    for entry in files:
        text = entry.read_text()
        numbers.update({(row["table"], row["dataset"], row["method"], row["metric"]): float(row["value"])
                        for row in csv.DictReader(io.StringIO(text))})
    return numbers


def _target_block(metric: str) -> tuple[str | None, str]:
    """A row label's block of targets (None for a plain metric such as ``HR@10``) and metric."""
    block, _, name = metric.rpartition(" ")
    return (block, name) if block in TARGET_BLOCKS else (None, metric)


def _record_field(record: dict[str, Any], metric: str) -> tuple[str, str]:
    """The record's suffix (``""``, ``_warm``, ``_cold``, ...) and metric name for a row label:
    ``HR@10`` as is; ``Warm R@10`` is ``Recall@10`` of the warm targets, which with one target
    per user (leave-one-out) is ``HR@10``."""
    block, name = _target_block(metric)
    if block is None:
        return "", metric
    full = name if name.startswith(("HR@", "NDCG@", "Recall@")) else {"R": "Recall", "N": "NDCG"}[name[0]] + name[1:]
    if full.startswith("Recall@") and full not in record.get(f"metrics{TARGET_BLOCKS[block]}", {}):
        full = "HR@" + full[len("Recall@"):]
    return TARGET_BLOCKS[block], full


def paper_metric(metric: str) -> str | None:
    """The paper's label for a row label (None for a row the paper measured otherwise)."""
    block, name = _target_block(metric)
    if block is None:
        return metric
    return f"{PAPER_BLOCKS[block]} {name}" if block in PAPER_BLOCKS else None


def metric_value(record: dict[str, Any], metric: str) -> float | None:
    """A row label's value in one record (None when the record does not have it)."""
    if metric == INFERENCE_SECONDS:
        return record.get("inference", {}).get("seconds")
    suffix, name = _record_field(record, metric)
    return record.get(f"metrics{suffix}", {}).get(name)


def _seed_averaged(records: list[dict[str, Any]], metric: str):
    suffix, name = _record_field(records[0], metric)
    return seed_averaged(records, name, suffix.lstrip("_"))


def _is_zero_shot_record(record: dict[str, Any]) -> bool:
    """A zero-shot record (trained on other datasets) says so in its method metadata."""
    return bool(record.get("method_metadata", {}).get("zero_shot", False))


def data_variant(record: dict[str, Any]) -> tuple[str, str, str]:
    """``(order, protocol, zero-shot sources)`` of a record beyond its dataset name: rows never mix
    them, so a reader never sees numbers of the ID-sorted IDGenRec release and of the chronological
    copy, of two split protocols, or of foundations trained on different sources in one row. The
    order: the card's declared one, or the recorded share of ID-sorted sequences."""
    source = record.get("dataset_source", {})
    sorted_by_id = (source.get("declared_order") == "ascending-item-id"
                    or source.get("share_sequences_in_ascending_id_order", 0.0) > ID_ORDER_WARNING_SHARE)
    trained_on = record.get("method_metadata", {}).get("trained_on", {}) if _is_zero_shot_record(record) else {}
    return ("ID-sorted release" if sorted_by_id else "", record["split"].get("protocol", "leave-one-out"),
            ", ".join(sorted(trained_on)))


def variant_label(variant: tuple[str, str, str], state_protocol: bool) -> str:
    order, protocol, sources = variant
    parts = [order] if order else []
    parts += [protocol] if protocol != "leave-one-out" and not state_protocol else []  # else the table names it
    parts += [f"trained on {sources}"] if sources else []
    return f" [{', '.join(parts)}]" if parts else ""


def records_of(records: list[dict[str, Any]], dataset: str, variant: tuple[str, str, str]) -> list[dict[str, Any]]:
    """The records of one row: one dataset in one data variant."""
    return [r for r in records if r["dataset"] == dataset and data_variant(r) == variant]


def cell_choice(records: list[dict[str, Any]], spec: TableSpec, column: Column, dataset: str,
                variant: tuple[str, str, str] | None = None) -> Choice:
    """The configuration (its seeds) that fills a cell, chosen by :func:`bench.cell_selection.choose`."""
    fitting = [r for r in records if r["dataset"] == dataset and column.matches(r)
               and (variant is None or data_variant(r) == variant)
               and not r["config"]["eval"].get("mask_history") and not is_diagnostic(r)
               and _is_zero_shot_record(r) == spec.zero_shot]
    return choose(fitting)


def row_choices(records: list[dict[str, Any]], spec: TableSpec, dataset: str,
                variant: tuple[str, str, str]) -> list[Choice]:
    """The choice of each column of ``spec`` in one row: one dataset in one data variant."""
    here = records_of(records, dataset, variant)  # once per row, not once per cell
    return [cell_choice(here, spec, column, dataset, variant) for column in spec.columns]


def rows_with_records(spec: TableSpec, records: list[dict[str, Any]]):
    """``(dataset, variant, choices)`` of each row of ``spec`` where some column has a record
    (``bench table --explain``, ``--cost``)."""
    for dataset in spec.datasets:
        for variant in sorted({data_variant(r) for r in records if r["dataset"] == dataset}):
            choices = row_choices(records, spec, dataset, variant)
            if any(choice.candidates for choice in choices):
                yield dataset, variant, choices


@dataclasses.dataclass
class Cell:
    value: float | None  # the mean over the seeds of ``records``
    paper: float | None
    records: list[dict[str, Any]] | None  # one per seed
    mark: str = ""
    significant: bool = False
    std: float | None = None  # standard deviation over seeds (ddof=1), with two or more seeds
    choice: Choice | None = None  # why these records (bench table --explain)

    @property
    def wall_clock(self) -> bool:
        """A wall-clock budget stopped the training of one of the cell's records."""
        return bool(self.choice and self.choice.chosen and self.choice.chosen.wall_clock)

    @property
    def record(self) -> dict[str, Any] | None:
        return self.records[0] if self.records else None


def _cell(choice: Choice, metric: str, paper: float | None) -> Cell:
    group = list(choice.chosen.records) if choice.chosen else None
    values = [value for value in (metric_value(r, metric) for r in group or []) if value is not None]
    if not group or len(values) < len(group):
        return Cell(value=None, paper=paper, records=group, choice=choice)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return Cell(value=float(np.mean(values)), paper=paper, records=group, std=std, choice=choice)


NO_PUBLIC_DATA = "no public data"


def _paper_only_rows(spec: TableSpec, dataset: str, paper: dict) -> list[tuple[str, str, list[Cell], str]]:
    """A dataset no public copy holds: the paper's numbers beside empty cells, labelled so."""
    paper_dataset = PAPER_DATASETS.get(dataset, dataset.capitalize())
    return [(f"{paper_dataset} ({NO_PUBLIC_DATA})", metric,
             [Cell(value=None, paper=paper.get((c.paper_table or spec.paper_table, paper_dataset, c.paper_label,
                                                paper_metric(metric))) if c.paper_label else None, records=None)
              for c in spec.columns], "")
            for metric in spec.metrics]


def _build_rows(spec: TableSpec, records: list[dict[str, Any]], paper: dict) -> list[tuple[str, str, list[Cell], str]]:
    rows = []
    pairs = [(dataset, variant) for dataset in spec.datasets
             for variant in sorted({data_variant(r) for r in records if r["dataset"] == dataset})
             if dataset not in spec.no_public_data]
    for dataset in spec.no_public_data:  # the paper's numbers only, in the spec's dataset order
        pairs.insert(sum(spec.datasets.index(d) < spec.datasets.index(dataset) for d, _ in pairs), (dataset, None))
    for dataset, variant in pairs:
        if variant is None:
            rows.extend(_paper_only_rows(spec, dataset, paper))
            continue
        choices = row_choices(records, spec, dataset, variant)
        if not any(choice.candidates for choice in choices):
            continue
        if spec.paper_datasets is None:
            paper_dataset = label = PAPER_DATASETS.get(dataset, dataset.capitalize())
        else:
            paper_dataset, label = spec.paper_datasets.get(dataset), dataset
        label += variant_label(variant, spec.state_protocol)
        if spec.state_protocol:
            protocols = sorted({r["split"].get("protocol", "leave-one-out") for choice in choices if choice.chosen
                                for r in choice.chosen.records})
            label += f" ({', '.join(protocols)})"
        for metric in spec.metrics:
            cells = [_cell(choice, metric, paper.get((c.paper_table or spec.paper_table, paper_dataset, c.paper_label,
                                                     paper_metric(metric)))
                           if c.paper_label and paper_dataset else None)
                     for c, choice in zip(spec.columns, choices)]
            if spec.state_protocol and all(c.value is None and c.paper is None for c in cells):
                continue  # e.g. no cold target under this protocol: no row of dashes
            # Seconds: the fastest is best, and "Improv." is how many times faster than the second.
            faster = metric == INFERENCE_SECONDS
            # Marks go by value: tied cells share a mark, and when every value ties (e.g. all 0 on
            # cold targets) nothing is best. "Second" is the next value below the best.
            present = [c for c in cells if c.value is not None]
            shown = sorted({round(c.value, 4) for c in present}, reverse=not faster)
            improvement = ""
            if len(shown) >= 2:
                marks = {shown[0]: "best", shown[1]: "second"}
                for cell in present:
                    cell.mark = marks.get(round(cell.value, 4), "")
                best = next(c for c in present if c.mark == "best")
                second = next(c for c in present if c.mark == "second")
                if faster:
                    improvement = f"{second.value / best.value:.2f}x" if best.value > 0 else ""
                    rows.append((label, metric, cells, improvement))
                    continue
                if best.record["split"]["digest"] == second.record["split"]["digest"]:
                    t_p, _ = paired_tests(_seed_averaged(best.records, metric), _seed_averaged(second.records, metric))
                    best.significant = t_p < ALPHA and best.value > second.value
                if second.value > 0:
                    improvement = f"{100 * (best.value - second.value) / second.value:.2f}%"
            elif len(present) == 1:
                present[0].mark = "best"
            rows.append((label, metric, cells, improvement))
    return rows


def digits_for(metric: str) -> int:
    """The decimals a row's values print with: metrics to 4, seconds to 1."""
    return 1 if metric == INFERENCE_SECONDS else 4


def _format(cell: Cell, output_format: str, with_paper: bool, digits: int = 4) -> str:
    if cell.value is None:
        text = "-"
    else:
        text = f"{cell.value:.{digits}f}"
        if cell.std is not None:
            text += f" $\\pm$ {cell.std:.{digits}f}" if output_format == "latex" else f" ± {cell.std:.{digits}f}"
        text += "*" if cell.significant else ""
        text += WALL_CLOCK_MARK if cell.wall_clock else ""
        if cell.mark == "best":
            text = f"\\textbf{{{text}}}" if output_format == "latex" else f"**{text}**"
        elif cell.mark == "second":
            text = f"\\underline{{{text}}}" if output_format == "latex" else f"<u>{text}</u>"
    if with_paper:
        text += f" ({cell.paper:.{digits}f})" if cell.paper is not None else " (-)"
    return text


def render_spec(spec: TableSpec, records: list[dict[str, Any]], output_format: str, with_paper: bool) -> str:
    rows = _build_rows(spec, records, paper_numbers())
    headers = ["Dataset", "Metric"] + [c.label for c in spec.columns] + ["Improv."]
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["table", "dataset", "metric", "method", "value", "std", "seeds", "paper", "significant",
                         "run_id", "rule", "wall_clock_stopped"])
        for dataset, metric, cells, _ in rows:
            for column, cell in zip(spec.columns, cells):
                writer.writerow([spec.paper_table, dataset, metric, column.label,
                                 "" if cell.value is None else f"{cell.value:.6f}",
                                 "" if cell.std is None else f"{cell.std:.6f}", len(cell.records or []),
                                 "" if cell.paper is None else cell.paper, int(cell.significant),
                                 ";".join(r["run_id"] for r in cell.records or []),
                                 cell.choice.rule if cell.choice else "", int(cell.wall_clock)])
        return buffer.getvalue().rstrip("\n")
    body = [[dataset, metric] + [_format(c, output_format, with_paper, digits_for(metric)) for c in cells]
            + [improvement]
            for dataset, metric, cells, improvement in rows]
    if not body:
        return f"{spec.title}\n(no runs in the store for this table yet)"
    if output_format == "latex":
        return f"% {spec.title}\n" + tabulate(body, headers=headers, tablefmt="latex_raw", disable_numparse=True)
    note = ("\n\nBold: best; underlined: second; *: paired t-test over users vs the second best, p < 0.05. "
            "Improv.: the best value's relative gain over the second best, whichever columns hold them.")
    if any(cell.std is not None for _, _, cells, _ in rows for cell in cells):
        note += " a ± b: mean ± standard deviation over seeds (tested on seed-averaged per-user values)."
    if any(cell.wall_clock for _, _, cells, _ in rows for cell in cells):
        note += (f" {WALL_CLOCK_MARK}: training stopped by a wall-clock budget (max_train_minutes), so its epoch "
                 "count depends on the machine and its load.")
    note += (" Each cell's configuration was chosen by its validation score, or as the method's default when "
             "validation could not decide (bench table NAME --explain says which and why).")
    if INFERENCE_SECONDS in spec.metrics:
        note += (f" {INFERENCE_SECONDS}: ranking every evaluated test user (the record's inference field); the "
                 "fastest is bold and Improv. says how many times faster it is than the second.")
    if spec.state_protocol:
        note += " Each dataset names the split protocol of its records; R@k is HR@k when a user has one target."
    note += repeat_share_note(rows)
    within_group = any(_target_block(metric)[0] == "Warm among warm" for metric in spec.metrics)
    if within_group:
        note += (" Warm / Cold: those targets ranked among all items; Warm among warm / Cold among cold: ranked "
                 "within their own group, SETRec's protocol (docs/evaluation.md).")
    if with_paper:
        note += " In parentheses: the paper's number."
        if within_group:
            note += " The paper's warm and cold numbers sit beside the within-group rows, measured as they were."
        note += "".join(f" {c.label}'s: {c.paper_table} (bench/reference/)." for c in spec.columns if c.paper_table)
    note += reality_check_note([c.label for c in spec.columns], [c.family for c in spec.columns], rows, cell_per_user)
    return f"{spec.title}\n\n" + tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + note


def repeat_share_note(rows: list[tuple[str, str, list[Cell], str]]) -> str:
    """The share of repeat test targets of each row's dataset that has any (Yelp), from the
    records' ``repeat_novel`` counts: every method's hits on them are flattered alike."""
    shares: dict[str, str] = {}
    for dataset, _, cells, _ in rows:
        counts = next((c.record["repeat_novel"] for c in cells if c.record and "repeat_novel" in c.record), None)
        if counts and dataset not in shares:
            total = counts["repeat_targets"] + counts["novel_targets"]
            shares[dataset] = (f"{dataset} {counts['repeat_targets']:,} of {total:,} "
                               f"({100 * counts['repeat_share']:.1f}%)")
    if not shares:
        return ""
    return (" Repeat targets (the item is already in the user's history, which is not masked; docs/evaluation.md): "
            + "; ".join(shares.values()) + ".")


def table_rows(spec: TableSpec, records: list[dict[str, Any]]) -> list[tuple[str, str, list[Cell], str]]:
    """The rows of a table as data: (dataset, metric, one cell per column, improvement text)."""
    return _build_rows(spec, records, paper_numbers())


def cell_per_user(cell: Cell, metric: str) -> np.ndarray | None:
    """The seed-averaged per-user values behind a cell (None for a row without per-user values,
    such as inference seconds, or a record that lacks them)."""
    if cell.value is None or metric == INFERENCE_SECONDS:
        return None
    try:
        return _seed_averaged(cell.records, metric)
    except (BenchError, KeyError):
        return None


def render_table(name: str, results_dir: Path, output_format: str = "markdown", with_paper: bool = False,
                 targets: str = "all") -> str:
    """A paper table from the store; ``targets`` (``repeat``, ``novel``) restricts every row to
    that block of the test targets (the paper's numbers measured all targets, so none sit beside them)."""
    specs = table_registry().get(name)
    if TABLE_TARGETS[targets] is not None:
        block = TABLE_TARGETS[targets]
        specs = [dataclasses.replace(spec, title=f"{spec.title} ({targets} targets only)",
                                     metrics=tuple(f"{block} {metric}" for metric in spec.metrics
                                                   if _target_block(metric)[0] is None))
                 for spec in specs]
    records = store_records(results_dir)
    return "\n\n".join(render_spec(spec, records, output_format, with_paper) for spec in specs)


def metrics_line(record: dict[str, Any]) -> str:
    """The test metrics of one record: all targets, then warm and cold ones when recorded."""
    shown = [m for m in ("Recall@5", "Recall@10") + METRICS if m in record["metrics"]]
    groups = [("all", record["metrics"])] + [(label.replace("_in_group", " (in group)"), record[f"metrics_{label}"])
                                             for label in TARGET_GROUPS.values()
                                             if label and f"metrics_{label}" in record]
    rows = [[record["method"], record["dataset"], record["split"].get("protocol", "leave-one-out"), label]
            + [f"{values[m]:.4f}" if m in values else "-" for m in shown] for label, values in groups]
    return tabulate(rows, headers=["method", "dataset", "protocol", "targets"] + shown, tablefmt="github")
