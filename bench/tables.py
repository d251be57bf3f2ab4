"""Paper tables rendered from the results store (and nothing else).

A table is data: a list of columns, each naming a method and, optionally, config values a
record must have (so ablation variants of one method become separate columns), and the
paper table whose numbers go beside the cells with ``--with-paper``. Rows are
dataset x metric. In each row the best value is bold and the second underlined; a star
marks a best value whose paired t-test over users against the second best has p < 0.05;
``Improv.`` is the best value's relative gain over the second best.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from tabulate import tabulate

from bench.errors import BenchError
from bench.registry import Registry
from bench.results import all_records, per_user
from bench.statistics import ALPHA, paired_tests

METRICS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")
PAPER_DATASETS = {"sports": "Sports", "beauty": "Beauty", "toys": "Toys", "yelp": "Yelp"}


@dataclasses.dataclass(frozen=True)
class Column:
    label: str
    method: str
    where: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paper_label: str | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        if record["method"] != self.method:
            return False
        method_config = record["config"]["method"]
        return all(method_config.get(key) == value for key, value in self.where.items())


@dataclasses.dataclass(frozen=True)
class TableSpec:
    title: str
    paper_table: str
    columns: tuple[Column, ...]
    datasets: tuple[str, ...] = ("sports", "beauty", "toys", "yelp")
    # The zero-shot table takes only records whose method metadata says zero_shot = True,
    # every other table only records that do not.
    record_filter: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _standard() -> list[TableSpec]:
    labels = [("Pop", "pop", None), ("GRU4Rec", "gru4rec", "GRU4Rec"), ("Caser", "caser", "Caser"),
              ("HGN", "hgn", "HGN"), ("SASRec", "sasrec", "SASRec"), ("BERT4Rec", "bert4rec", "Bert4Rec"),
              ("FDSA", "fdsa", "FDSA"), ("S3Rec", "s3rec", "S3Rec"), ("P5-CID", "p5-cid", "P5-CID"),
              ("P5-SemID", "p5-semid", "P5-SemID"), ("P5-SID", "p5-sid", "P5-SID"),
              ("IDGenRec", "idgenrec", "IDGenRec")]
    columns = tuple(Column(label, method, {"training": "alternate", "ids": "user+item"} if method == "idgenrec" else {},
                           paper) for label, method, paper in labels)
    return [TableSpec("Table 4: standard evaluation", "standard", columns,
                      ("sports", "beauty", "toys", "yelp", "demo"))]


def _ablation() -> list[TableSpec]:
    training = tuple(Column(label, "idgenrec", {"training": value, "ids": "user+item"}, label)
                     for label, value in (("ID-only", "id-only"), ("Rec-only", "rec-only"), ("Alternate", "alternate")))
    ids = tuple(Column(label, "idgenrec", {"training": "alternate", "ids": value}, label)
                for label, value in (("User ID", "user"), ("Item ID", "item"), ("User & Item ID", "user+item")))
    return [TableSpec("Table 5: training strategy", "ablation-training", training, ("sports", "beauty", "toys")),
            TableSpec("Table 6: user and item IDs", "ablation-user-id", ids, ("sports", "beauty", "toys"))]


def _zero_shot_tables() -> list[TableSpec]:
    columns = (Column("UniSRec", "unisrec", {}, "UniSRec"), Column("IDGenRec", "idgenrec", {}, "IDGenRec"))
    return [TableSpec("Table 7: zero-shot", "zero-shot", columns, ("sports", "beauty", "toys", "music"),
                      {"zero_shot": True})]


def table_registry() -> Registry:
    registry: Registry = Registry("table")
    registry.add("standard", _standard)
    registry.add("ablation", _ablation)
    registry.add("zero-shot", _zero_shot_tables)
    return registry


def paper_numbers() -> dict[tuple[str, str, str, str], float]:
    text = resources.files("bench").joinpath("reference/idgenrec_paper_tables.csv").read_text()
    return {(row["table"], row["dataset"], row["method"], row["metric"]): float(row["value"])
            for row in csv.DictReader(io.StringIO(text))}


def _is_zero_shot_record(record: dict[str, Any]) -> bool:
    """A zero-shot record (trained on other datasets) says so in its method metadata."""
    return bool(record.get("method_metadata", {}).get("zero_shot", False))


def _latest(records: list[dict[str, Any]], spec: TableSpec, column: Column, dataset: str) -> dict[str, Any] | None:
    chosen = [r for r in records if r["dataset"] == dataset and column.matches(r)
              and not r["config"]["eval"].get("mask_history")
              and _is_zero_shot_record(r) == bool(spec.record_filter.get("zero_shot", False))]
    return max(chosen, key=lambda r: r["started_at"]) if chosen else None


@dataclasses.dataclass
class Cell:
    value: float | None
    paper: float | None
    record: dict[str, Any] | None
    mark: str = ""
    significant: bool = False


def _build_rows(spec: TableSpec, records: list[dict[str, Any]], paper: dict) -> list[tuple[str, str, list[Cell], str]]:
    rows = []
    for dataset in spec.datasets:
        chosen = [_latest(records, spec, column, dataset) for column in spec.columns]
        if not any(chosen):
            continue
        paper_dataset = PAPER_DATASETS.get(dataset, dataset.capitalize())
        for metric in METRICS:
            cells = [Cell(value=r["metrics"].get(metric) if r else None,
                          paper=paper.get((spec.paper_table, paper_dataset, c.paper_label, metric)) if c.paper_label else None,
                          record=r) for c, r in zip(spec.columns, chosen)]
            ranked = sorted((i for i, c in enumerate(cells) if c.value is not None), key=lambda i: -cells[i].value)
            improvement = ""
            if len(ranked) >= 2:
                best, second = cells[ranked[0]], cells[ranked[1]]
                best.mark, second.mark = "best", "second"
                if best.record["split"]["digest"] == second.record["split"]["digest"]:
                    t_p, _ = paired_tests(per_user(best.record, metric), per_user(second.record, metric))
                    best.significant = t_p < ALPHA and best.value > second.value
                if second.value > 0:
                    improvement = f"{100 * (best.value - second.value) / second.value:.2f}%"
            elif ranked:
                cells[ranked[0]].mark = "best"
            rows.append((paper_dataset, metric, cells, improvement))
    return rows


def _format(cell: Cell, output_format: str, with_paper: bool) -> str:
    if cell.value is None:
        text = "-"
    else:
        text = f"{cell.value:.4f}" + ("*" if cell.significant else "")
        if cell.mark == "best":
            text = f"\\textbf{{{text}}}" if output_format == "latex" else f"**{text}**"
        elif cell.mark == "second":
            text = f"\\underline{{{text}}}" if output_format == "latex" else f"<u>{text}</u>"
    if with_paper:
        text += f" ({cell.paper:.4f})" if cell.paper is not None else " (-)"
    return text


def render_spec(spec: TableSpec, records: list[dict[str, Any]], output_format: str, with_paper: bool) -> str:
    rows = _build_rows(spec, records, paper_numbers())
    headers = ["Dataset", "Metric"] + [c.label for c in spec.columns] + ["Improv."]
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["table", "dataset", "metric", "method", "value", "paper", "significant", "run_id"])
        for dataset, metric, cells, _ in rows:
            for column, cell in zip(spec.columns, cells):
                writer.writerow([spec.paper_table, dataset, metric, column.label,
                                 "" if cell.value is None else f"{cell.value:.6f}",
                                 "" if cell.paper is None else cell.paper, int(cell.significant),
                                 cell.record["run_id"] if cell.record else ""])
        return buffer.getvalue().rstrip("\n")
    body = [[dataset, metric] + [_format(c, output_format, with_paper) for c in cells] + [improvement]
            for dataset, metric, cells, improvement in rows]
    if not body:
        return f"{spec.title}\n(no runs in the store for this table yet)"
    if output_format == "latex":
        return f"% {spec.title}\n" + tabulate(body, headers=headers, tablefmt="latex_raw")
    note = "\n\nBold: best; underlined: second; *: paired t-test over users vs the second best, p < 0.05."
    if with_paper:
        note += " In parentheses: the paper's number."
    return f"{spec.title}\n\n" + tabulate(body, headers=headers, tablefmt="github") + note


def render_table(name: str, results_dir: Path, output_format: str = "markdown", with_paper: bool = False) -> str:
    specs = table_registry().get(name)
    records = all_records(results_dir) if Path(results_dir).exists() else []
    if not Path(results_dir).exists():
        raise BenchError(f"{results_dir}: results store not found")
    return "\n\n".join(render_spec(spec, records, output_format, with_paper) for spec in specs)


def metrics_line(record: dict[str, Any]) -> str:
    rows = [[record["method"], record["dataset"]] + [f"{record['metrics'][m]:.4f}" for m in METRICS
                                                     if m in record["metrics"]]]
    headers = ["method", "dataset"] + [m for m in METRICS if m in record["metrics"]]
    return tabulate(rows, headers=headers, tablefmt="github")
