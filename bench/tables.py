"""Paper tables rendered from the results store (and nothing else).

A table is data: a list of columns, each naming a method and, optionally, config values a
record must have (so ablation variants of one method become separate columns), and the
paper table whose numbers go beside the cells with ``--with-paper``. Rows are
dataset x metric. In each row the best value is bold and the second underlined; a star
marks a best value whose paired t-test over users against the second best has p < 0.05;
``Improv.`` is the best value's relative gain over the second best.

When the store holds several seeds of a column's configuration, the cell is their mean ±
standard deviation, and the test runs over users on the seed-averaged per-user values.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tabulate import tabulate

from bench.data.prepare import ID_ORDER_WARNING_SHARE
from bench.errors import BenchError
from bench.registry import Registry
from bench.results import TARGET_GROUPS, all_records
from bench.statistics import ALPHA, paired_tests, seed_averaged, seed_groups

METRICS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")
PAPER_DATASETS = {"sports": "Sports", "beauty": "Beauty", "toys": "Toys", "yelp": "Yelp"}
# SETRec's Table 1: blocks of targets (all, warm, cold) x Recall/NDCG@k, and inference time.
# Warm and cold targets are ranked among all items ("Warm", "Cold") and, SETRec's protocol,
# within their own group ("Warm among warm", "Cold among cold": the record's *_in_group fields).
TARGET_BLOCKS = {"All": "", "Warm": "_warm", "Cold": "_cold", "Warm among warm": "_warm_in_group",
                 "Cold among cold": "_cold_in_group"}
# The labels of bench/reference/setrec_paper_tables.csv: the paper ranked warm (cold) targets
# among warm (cold) items, so its numbers sit beside those rows only.
PAPER_BLOCKS = {"All": "All", "Warm among warm": "Warm", "Cold among cold": "Cold"}
INFERENCE_SECONDS = "Inference seconds (all users)"
SETREC_METRICS = tuple(f"{block} {name}" for block in TARGET_BLOCKS for name in ("R@5", "R@10", "N@5", "N@10")) \
    + (INFERENCE_SECONDS,)
# The paper's Table 1 was measured on its own published split: only those rows get its numbers.
SETREC_PAPER_DATASETS = {"setrec-toys": "Toys", "setrec-beauty": "Beauty", "setrec-sports": "Sports",
                         "setrec-steam": "Steam"}


@dataclasses.dataclass(frozen=True)
class Column:
    label: str
    method: str
    where: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paper_label: str | None = None
    # The reference table this column's paper number comes from, when it is not the table's own
    # (a method the table's paper did not run, with its own paper's number on the same protocol).
    paper_table: str | None = None

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
    # Row metrics (see metric_value); the datasets that get the paper's numbers (None: those
    # of PAPER_DATASETS, else the capitalised name); state_protocol: rows name their protocol.
    metrics: tuple[str, ...] = METRICS
    paper_datasets: Mapping[str, str] | None = None
    state_protocol: bool = False


def _standard() -> list[TableSpec]:
    # The reality-check block (docs/baselines.md) sits beside Pop; the paper ran none of it.
    labels = [("Pop", "pop", None), ("Recent", "recent", None), ("Item-kNN", "item-knn", None),
              ("SKNN", "sknn", None), ("FPMC", "fpmc", None), ("GRU4Rec", "gru4rec", "GRU4Rec"), ("GRU4Rec (BPR)", "gru4rec", "GRU4Rec"),
              ("Caser", "caser", "Caser"), ("HGN", "hgn", "HGN"), ("SASRec", "sasrec", "SASRec"),
              ("SASRec (BPR)", "sasrec", "SASRec"), ("BERT4Rec", "bert4rec", "Bert4Rec"),
              ("FDSA", "fdsa", "FDSA"), ("S3Rec", "s3rec", "S3Rec"), ("P5-CID", "p5-cid", "P5-CID"),
              ("P5-SemID", "p5-semid", "P5-SemID"), ("P5-SID", "p5-sid", "P5-SID"),
              ("IDGenRec", "idgenrec", "IDGenRec")]
    recbole = {"gru4rec", "caser", "hgn", "sasrec", "bert4rec", "fdsa", "s3rec"}

    def where(label: str, method: str) -> dict[str, Any]:
        if method == "idgenrec":
            return {"training": "alternate", "ids": "user+item"}
        if method in recbole:  # the two losses are separate, labelled columns (both beside the paper's number)
            return {"loss_type": "BPR" if label.endswith("(BPR)") else "CE"}
        return {}

    columns = tuple(Column(label, method, where(label, method), paper) for label, method, paper in labels)
    # TIGER is not in IDGenRec's Table 4; its number is TIGER's own Table 1 (same 5-core data,
    # leave-one-out, Recall@k = HR@k with one target). Random-ID runs are its ablation, not this column.
    columns += (Column("TIGER", "tiger", {"semantic_ids": "rqvae"}, "TIGER", paper_table="tiger-table1"),)
    # HSTU and RPG are in no paper table on this protocol here: their columns have no paper number.
    columns += (Column("HSTU", "hstu"), Column("RPG", "rpg", {"decoding": "graph"}))
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
    # Yelp is Table 7's inter-platform row (foundation trained on Amazon data only).
    return [TableSpec("Table 7: zero-shot", "zero-shot", columns, ("sports", "beauty", "toys", "music", "yelp"),
                      {"zero_shot": True})]


def _setrec() -> list[TableSpec]:
    """SETRec's Table 1 (T5-small block): the methods the harness has, all/warm/cold, inference time."""
    columns = (Column("IDGenRec", "idgenrec", {"training": "alternate", "ids": "user+item"}, "IDGenRec"),
               Column("P5-CID", "p5-cid", {}, "CID"), Column("P5-SemID", "p5-semid", {}, "SemID"),
               Column("TIGER", "tiger", {"semantic_ids": "rqvae"}, "TIGER"),
               Column("SASRec", "sasrec", {"loss_type": "CE"}, None),
               Column("RPG", "rpg", {"decoding": "graph"}, None),
               Column("SETRec", "setrec", {"cf_token": True, "semantic_tokens": True, "shared_query": False,
                                           "item_positions": "shared"}, "SETRec"))
    return [TableSpec("SETRec Table 1: all / warm / cold targets and inference time", "setrec-T5-small", columns,
                      ("setrec-toys", "setrec-beauty", "setrec-sports", "toys", "beauty", "sports", "demo"),
                      metrics=SETREC_METRICS, paper_datasets=SETREC_PAPER_DATASETS, state_protocol=True)]


def table_registry() -> Registry:
    registry: Registry = Registry("table")
    registry.add("standard", _standard)
    registry.add("ablation", _ablation)
    registry.add("zero-shot", _zero_shot_tables)
    registry.add("setrec", _setrec)
    return registry


def paper_numbers() -> dict[tuple[str, str, str, str], float]:
    numbers = {}
    for name in ("idgenrec_paper_tables.csv", "setrec_paper_tables.csv", "tiger_paper_tables.csv"):
        text = resources.files("bench").joinpath(f"reference/{name}").read_text()
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
    full = {"R": "Recall", "N": "NDCG"}[name[0]] + name[1:]
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
    them. The order: the card's declared one, or the recorded share of ID-sorted sequences."""
    source = record.get("dataset_source", {})
    sorted_by_id = (source.get("declared_order") == "ascending-item-id"
                    or source.get("share_sequences_in_ascending_id_order", 0.0) > ID_ORDER_WARNING_SHARE)
    trained_on = record.get("method_metadata", {}).get("trained_on", {}) if _is_zero_shot_record(record) else {}
    return ("ID-sorted release" if sorted_by_id else "", record["split"].get("protocol", "leave-one-out"),
            ", ".join(sorted(trained_on)))


def _variant_label(variant: tuple[str, str, str], state_protocol: bool) -> str:
    order, protocol, sources = variant
    parts = [order] if order else []
    parts += [protocol] if protocol != "leave-one-out" and not state_protocol else []  # else the table names it
    parts += [f"trained on {sources}"] if sources else []
    return f" [{', '.join(parts)}]" if parts else ""


def _latest_group(records: list[dict[str, Any]], spec: TableSpec, column: Column,
                  dataset: str, variant: tuple[str, str, str] | None = None) -> list[dict[str, Any]] | None:
    """The seeds of the newest configuration that fits the cell (one record per seed)."""
    chosen = [r for r in records if r["dataset"] == dataset and column.matches(r)
              and (variant is None or data_variant(r) == variant)
              and not r["config"]["eval"].get("mask_history")
              and _is_zero_shot_record(r) == bool(spec.record_filter.get("zero_shot", False))]
    groups = seed_groups(chosen)
    return max(groups, key=lambda group: max(r["started_at"] for r in group)) if groups else None


@dataclasses.dataclass
class Cell:
    value: float | None  # the mean over the seeds of ``records``
    paper: float | None
    records: list[dict[str, Any]] | None  # one per seed
    mark: str = ""
    significant: bool = False
    std: float | None = None  # standard deviation over seeds (ddof=1), with two or more seeds

    @property
    def record(self) -> dict[str, Any] | None:
        return self.records[0] if self.records else None


def _cell(group: list[dict[str, Any]] | None, metric: str, paper: float | None) -> Cell:
    values = [value for value in (metric_value(r, metric) for r in group or []) if value is not None]
    if not group or len(values) < len(group):
        return Cell(value=None, paper=paper, records=group)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return Cell(value=float(np.mean(values)), paper=paper, records=group, std=std)


def _build_rows(spec: TableSpec, records: list[dict[str, Any]], paper: dict) -> list[tuple[str, str, list[Cell], str]]:
    rows = []
    pairs = [(dataset, variant) for dataset in spec.datasets
             for variant in sorted({data_variant(r) for r in records if r["dataset"] == dataset})]
    for dataset, variant in pairs:
        chosen = [_latest_group(records, spec, column, dataset, variant) for column in spec.columns]
        if not any(chosen):
            continue
        if spec.paper_datasets is None:
            paper_dataset = label = PAPER_DATASETS.get(dataset, dataset.capitalize())
        else:
            paper_dataset, label = spec.paper_datasets.get(dataset), dataset
        label += _variant_label(variant, spec.state_protocol)
        if spec.state_protocol:
            protocols = sorted({r["split"].get("protocol", "leave-one-out") for g in chosen if g for r in g})
            label += f" ({', '.join(protocols)})"
        for metric in spec.metrics:
            cells = [_cell(group, metric, paper.get((c.paper_table or spec.paper_table, paper_dataset, c.paper_label,
                                                     paper_metric(metric)))
                           if c.paper_label and paper_dataset else None)
                     for c, group in zip(spec.columns, chosen)]
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
                         "run_id"])
        for dataset, metric, cells, _ in rows:
            for column, cell in zip(spec.columns, cells):
                writer.writerow([spec.paper_table, dataset, metric, column.label,
                                 "" if cell.value is None else f"{cell.value:.6f}",
                                 "" if cell.std is None else f"{cell.std:.6f}", len(cell.records or []),
                                 "" if cell.paper is None else cell.paper, int(cell.significant),
                                 ";".join(r["run_id"] for r in cell.records or [])])
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
    if INFERENCE_SECONDS in spec.metrics:
        note += (f" {INFERENCE_SECONDS}: ranking every evaluated test user (the record's inference field); the "
                 "fastest is bold and Improv. says how many times faster it is than the second.")
    if spec.state_protocol:
        note += " Each dataset names the split protocol of its records; R@k is HR@k when a user has one target."
    within_group = any(_target_block(metric)[0] == "Warm among warm" for metric in spec.metrics)
    if within_group:
        note += (" Warm / Cold: those targets ranked among all items; Warm among warm / Cold among cold: ranked "
                 "within their own group, SETRec's protocol (docs/evaluation.md).")
    note += repeat_share_note(rows)
    if with_paper:
        note += " In parentheses: the paper's number."
        if within_group:
            note += " The paper's warm and cold numbers sit beside the within-group rows, measured as they were."
        note += "".join(f" {c.label}'s: {c.paper_table} (bench/reference/)." for c in spec.columns if c.paper_table)
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


def render_table(name: str, results_dir: Path, output_format: str = "markdown", with_paper: bool = False) -> str:
    specs = table_registry().get(name)
    records = all_records(results_dir) if Path(results_dir).exists() else []
    if not Path(results_dir).exists():
        raise BenchError(f"{results_dir}: results store not found")
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
