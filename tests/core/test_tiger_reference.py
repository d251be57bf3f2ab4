"""TIGER's own Table 1 numbers beside TIGER runs in the standard table, and nowhere they do not belong."""

from __future__ import annotations

import csv
import io
from importlib import resources

from bench.results import all_records, write_record
from bench.tables import paper_numbers, render_table, table_registry, table_rows
from tests.test_report import fixture_record

REFERENCE_FILES = ("idgenrec_paper_tables.csv", "setrec_paper_tables.csv", "tiger_paper_tables.csv")


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("bench").joinpath(f"reference/{name}").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def _standard_cells(results, metric: str) -> dict[str, object]:
    spec = table_registry().get("standard")[0]
    cells = next(cells for _, row_metric, cells, _ in table_rows(spec, all_records(results)) if row_metric == metric)
    return {column.label: cell for column, cell in zip(spec.columns, cells)}


def test_no_reference_file_shadows_another():
    """paper_numbers merges the files into one dict: a key in two files would silently keep the last."""
    keys = [(row["table"], row["dataset"], row["method"], row["metric"]) for name in REFERENCE_FILES
            for row in _rows(name)]
    assert len(keys) == len(set(keys))
    assert len(paper_numbers()) == len(keys)


def test_tiger_reference_has_every_dataset_and_metric_of_its_table_1():
    rows = _rows("tiger_paper_tables.csv")
    got = {(row["dataset"], row["metric"]) for row in rows
           if row["table"] == "tiger-table1" and row["method"] == "TIGER"}
    assert got == {(dataset, metric) for dataset in ("Sports", "Beauty", "Toys")
                   for metric in ("HR@5", "NDCG@5", "HR@10", "NDCG@10")}
    assert all(0 < float(row["value"]) < 1 for row in rows)


def test_tiger_toys_run_sits_beside_tigers_own_number(tmp_path):
    results = tmp_path / "results"
    write_record(results, fixture_record("tiger", 42, 0.3, 1, {"semantic_ids": "rqvae"}))
    write_record(results, fixture_record("sasrec", 42, 0.2, 2, {"loss_type": "CE"}))
    cells = _standard_cells(results, "HR@10")
    tiger = cells["TIGER"]
    assert tiger.value is not None and tiger.paper == paper_numbers()[("tiger-table1", "Toys", "TIGER", "HR@10")]
    # The other columns keep the table's own paper (IDGenRec's Table 4), not TIGER's.
    assert cells["SASRec"].paper == paper_numbers()[("standard", "Toys", "SASRec", "HR@10")]
    text = render_table("standard", results, with_paper=True)
    assert "TIGER" in text.splitlines()[2]  # header row
    assert f"({paper_numbers()[('tiger-table1', 'Toys', 'TIGER', 'NDCG@10')]:.4f})" in text
    assert "TIGER's: tiger-table1" in text  # the note says which paper that column's number is from


def test_random_id_ablation_run_is_not_put_beside_tigers_number(tmp_path):
    results = tmp_path / "results"
    write_record(results, fixture_record("tiger", 42, 0.3, 1, {"semantic_ids": "random"}))
    write_record(results, fixture_record("sasrec", 42, 0.2, 2, {"loss_type": "CE"}))
    assert _standard_cells(results, "HR@10")["TIGER"].value is None
