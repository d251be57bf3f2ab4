"""Tables over several seeds, and the CE/BPR columns of the RecBole baselines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.results import all_records, write_record
from bench.tables import render_table, table_registry, table_rows
from tests.test_report import fixture_record


def test_seed_group_cell_is_mean_and_std_and_tested_on_seed_averaged_users(tmp_path):
    results = tmp_path / "results"
    sasrec = [fixture_record("sasrec", seed, 0.4, number, {"loss_type": "CE"}) for seed, number in ((1, 1), (2, 2), (3, 3))]
    gru4rec = [fixture_record("gru4rec", seed, 0.1, number, {"loss_type": "CE"}) for seed, number in ((1, 4), (2, 5))]
    for record in sasrec + gru4rec:
        write_record(results, record)
    spec = table_registry().get("standard")[0]
    rows = {metric: cells for _, metric, cells, _ in table_rows(spec, all_records(results))}
    labels = [column.label for column in spec.columns]
    best = rows["HR@10"][labels.index("SASRec")]
    values = [r["metrics"]["HR@10"] for r in sasrec]
    assert best.value == pytest.approx(np.mean(values)) and best.std == pytest.approx(np.std(values, ddof=1))
    assert len(best.records) == 3 and best.mark == "best"
    averaged = [np.mean([r["per_user"]["HR@10"] for r in group], axis=0) for group in (sasrec, gru4rec)]
    assert best.significant == (stats.ttest_rel(*averaged).pvalue < 0.05)
    text = render_table("standard", results)
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in text
    assert "mean ± standard deviation over seeds" in text


def test_ce_and_bpr_runs_sit_in_separate_labelled_columns(tmp_path):
    results = tmp_path / "results"
    write_record(results, fixture_record("sasrec", 42, 0.4, 1, {"loss_type": "CE"}))
    write_record(results, fixture_record("sasrec", 42, 0.2, 2, {"loss_type": "BPR"}))  # newer, other loss
    spec = table_registry().get("standard")[0]
    labels = [column.label for column in spec.columns]
    cells = next(cells for _, metric, cells, _ in table_rows(spec, all_records(results)) if metric == "HR@10")
    ce, bpr = cells[labels.index("SASRec")], cells[labels.index("SASRec (BPR)")]
    assert ce.record["config"]["method"]["loss_type"] == "CE" and bpr.record["config"]["method"]["loss_type"] == "BPR"
    assert ce.value > bpr.value
    assert ce.paper is not None and bpr.paper == ce.paper  # both beside the paper's SASRec number
    # SETRec's table has one SASRec column, the CE one: the newer BPR run does not slip into it.
    setrec = table_registry().get("setrec")[0]
    cells = next(cells for _, metric, cells, _ in table_rows(setrec, all_records(results)) if metric == "All R@10")
    sasrec = cells[[column.label for column in setrec.columns].index("SASRec")]
    assert sasrec.record["config"]["method"]["loss_type"] == "CE" and sasrec.value == ce.value


def test_tied_cells_share_their_mark_and_an_all_tied_row_has_no_best(tmp_path):
    results = tmp_path / "results"
    # sasrec and gru4rec draw the same per-user values (same fixture number): a tie for best.
    write_record(results, fixture_record("sasrec", 42, 0.4, 1, {"loss_type": "CE"}))
    write_record(results, fixture_record("gru4rec", 42, 0.4, 1, {"loss_type": "CE"}) | {"run_id": "20260101T000002-gru4rec-x"})
    write_record(results, fixture_record("pop", 42, 0.1, 3))
    spec = table_registry().get("standard")[0]
    labels = [column.label for column in spec.columns]
    cells = next(cells for _, metric, cells, _ in table_rows(spec, all_records(results)) if metric == "HR@10")
    assert [cells[labels.index(name)].mark for name in ("SASRec", "GRU4Rec", "Pop")] == ["best", "best", "second"]

    zeros = tmp_path / "zeros"
    write_record(zeros, fixture_record("sasrec", 42, 0.0, 1, {"loss_type": "CE"}))
    write_record(zeros, fixture_record("pop", 42, 0.0, 3))
    for _, _, cells, improvement in table_rows(spec, all_records(zeros)):
        assert all(not cell.mark for cell in cells) and improvement == ""


def test_zero_shot_records_on_other_sources_sit_in_their_own_labelled_rows(tmp_path):
    fusion = {"zero_shot": True, "trained_on": {name: {} for name in ("health", "books")}}
    older = {"zero_shot": True, "trained_on": {"beauty": {}, "sports": {}}}
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.3, 1, {}, fusion))
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.1, 2, {}, older))  # newer, other sources
    table = render_table("zero-shot", tmp_path)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if "HR@10" in line and "no public data" not in line}
    assert set(rows) == {"Toys [trained on books, health]", "Toys [trained on beauty, sports]"}
    for label, number in (("Toys [trained on books, health]", 1), ("Toys [trained on beauty, sports]", 2)):
        record = fixture_record("idgenrec", 42, (0.3, 0.1)[number - 1], number)
        assert f"{record['metrics']['HR@10']:.4f}" in rows[label]


def test_datasets_with_no_public_data_show_the_papers_numbers_only(tmp_path) -> None:
    """Table 7's Music and Instruments: the paper's numbers beside 'no public data', in the spec's order."""
    from bench.tables import render_table

    (tmp_path / "results").mkdir()
    text = render_table("zero-shot", tmp_path / "results", with_paper=True)
    lines = [line for line in text.splitlines() if "(no public data)" in line]
    assert [line.split("|")[1].strip() for line in lines[::4]] == ["Music (no public data)",
                                                                  "Instruments (no public data)"]
    music_hr10 = next(line for line in lines if "Music" in line and "HR@10" in line)
    assert "- (0.0294)" in music_hr10 and "- (0.0238)" in music_hr10


def test_reality_check_note_sorts_generative_columns_by_holm_adjusted_paired_tests(tmp_path):
    alternate = {"training": "alternate", "ids": "user+item"}
    write_record(tmp_path, fixture_record("item-knn", 42, 0.30, 1))  # the bar
    write_record(tmp_path, fixture_record("sknn", 42, 0.10, 2))
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.60, 3, alternate))  # far above
    write_record(tmp_path, fixture_record("p5-cid", 42, 0.02, 4))  # far below
    write_record(tmp_path, fixture_record("p5-sid", 42, 0.30, 1) | {"run_id": "20260101T000005-p5-sid-5"})  # identical
    write_record(tmp_path, fixture_record("sasrec", 42, 0.90, 6, {"loss_type": "CE"}))  # neither family
    spec = table_registry().get("standard")[0]
    families = {column.label: column.family for column in spec.columns}
    assert families["Item-kNN"] == "reality-check" and families["IDGenRec"] == "generative"
    assert families["SASRec"] is None and families["RPG"] == "generative"  # a method's own column
    note = render_table("standard", tmp_path).split("Reality check")[1]
    hr10 = next(line for line in note.splitlines() if line.startswith("- Toys HR@10"))
    bar = fixture_record("item-knn", 42, 0.30, 1)["metrics"]["HR@10"]
    assert f"bar Item-kNN {bar:.4f}" in hr10
    above, level, below = (hr10.split(f"{part}: ")[1].split(";")[0] for part in ("above", "level", "below"))
    assert above.startswith("IDGenRec") and level.startswith("P5-SID") and "(p 1)" in level
    assert below.startswith("P5-CID") and "SASRec" not in hr10
    # Holm over the row's three tests: the smallest p-value is multiplied by 3.
    per_user = {m: fixture_record(m, 42, rate, n)["per_user"]["HR@10"]
                for m, rate, n in (("item-knn", 0.30, 1), ("idgenrec", 0.60, 3), ("p5-cid", 0.02, 4))}
    raw = [stats.ttest_rel(per_user[m], per_user["item-knn"]).pvalue for m in ("idgenrec", "p5-cid")]
    assert f"(p {min(1.0, 3 * min(raw)):.2g})" in hr10


def test_a_table_without_both_families_has_no_reality_check_note(tmp_path):
    write_record(tmp_path, fixture_record("item-knn", 42, 0.30, 1))
    write_record(tmp_path, fixture_record("sasrec", 42, 0.50, 2, {"loss_type": "CE"}))
    assert "Reality check" not in render_table("standard", tmp_path)


def test_a_column_of_an_unknown_family_is_refused_with_its_label():
    from bench.errors import BenchError
    from bench.table_specs import _column

    with pytest.raises(BenchError, match="column 'X': family must be one of reality-check, generative; got 'neural'"):
        _column({"label": "X", "method": "pop", "family": "neural"}, "standard", "tables.toml, table 'standard'")


def test_a_where_list_takes_any_of_its_values_so_tiger_columns_hold_rqvae_and_rkmeans_codes():
    from bench.table_specs import Column

    column = Column(table="standard", label="X", method="tiger", where={"semantic_ids": ["rqvae", "rkmeans"]})
    assert column.matches({"method": "tiger", "config": {"method": {"semantic_ids": "rkmeans"}}})
    assert not column.matches({"method": "tiger", "config": {"method": {"semantic_ids": "random"}}})
    for table in ("standard", "setrec"):
        tiger = next(c for c in table_registry().get(table)[0].columns if c.label == "TIGER")
        codes = {name: tiger.matches({"method": "tiger", "config": {"method": {"semantic_ids": name}}})
                 for name in ("rqvae", "rkmeans", "random")}
        assert codes == {"rqvae": True, "rkmeans": True, "random": False}
        assert not tiger.matches({"method": "tiger", "config": {"method": {"semantic_ids": "rqvae",
                                                                           "tokenizer": "letter"}}})
