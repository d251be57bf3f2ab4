"""``bench claims``: a paper's claim checked on the cells of its table."""

from __future__ import annotations

import tomllib

import pytest
from scipy import stats

from bench.cell_selection import WALL_CLOCK_STOP
from bench.claims import DOES_NOT_HOLD, HOLDS, NOT_SHOWN, parse_claims, render_claims
from bench.errors import BenchError
from bench.results import write_record
from tests.test_report import fixture_record

ALTERNATE = {"training": "alternate", "ids": "user+item"}


def _sentence(text: str, claim: str, dataset: str = "Toys") -> str:
    section = text.split(f"## {claim} ")[1].split("\n## ")[0]
    return next(line for line in section.splitlines() if line.startswith(f"- {dataset}:"))


def test_a_candidate_above_every_baseline_on_every_metric_holds(tmp_path):
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.60, 1, ALTERNATE))
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.10, 2, {"training": "id-only", "ids": "user+item"}))
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.20, 3, {"training": "rec-only", "ids": "user+item"}))
    sentence = _sentence(render_claims(tmp_path), "alternate-training")
    assert sentence.startswith(f"- Toys: {HOLDS}.") and "ID-only" in sentence and "(4/0/0)" in sentence
    # The gain over the strongest baseline per metric, averaged over the four metrics.
    alternate, rec_only = (fixture_record("idgenrec", 42, rate, n)["metrics"] for rate, n in ((0.60, 1), (0.20, 3)))
    gain = sum((alternate[m] - rec_only[m]) / rec_only[m] for m in ("HR@5", "NDCG@5", "HR@10", "NDCG@10")) / 4
    assert f"mean over HR@5, NDCG@5, HR@10, NDCG@10: {100 * gain:+.1f}%" in sentence


def test_a_claim_with_a_baseline_without_a_record_is_not_shown_even_when_above_the_others(tmp_path):
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.60, 1, ALTERNATE))
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.10, 2, {"training": "id-only", "ids": "user+item"}))
    sentence = _sentence(render_claims(tmp_path), "alternate-training")
    assert sentence.startswith(f"- Toys: {NOT_SHOWN}.") and "ID-only +" in sentence and "(4/0/0)" in sentence
    assert sentence.endswith("No record: Rec-only.")


def test_a_baseline_above_the_candidate_breaks_the_claim_and_a_missing_one_is_named(tmp_path):
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.20, 1, ALTERNATE))
    write_record(tmp_path, fixture_record("sasrec", 42, 0.60, 2, {"loss_type": "CE"}))
    write_record(tmp_path, fixture_record("p5-cid", 42, 0.02, 3, metadata={"stopped_by": WALL_CLOCK_STOP}))
    sentence = _sentence(render_claims(tmp_path, "idgenrec-beats-baselines"), "idgenrec-beats-baselines")
    assert sentence.startswith(f"- Toys: {DOES_NOT_HOLD}.")
    assert "): SASRec -73.8% (0/0/4); P5-CID† +" in sentence  # † : a wall-clock budget stopped it
    assert "No record: GRU4Rec, Caser, HGN, BERT4Rec, FDSA, S3Rec, P5-SemID, P5-SID." in sentence


def test_a_difference_within_the_noise_is_not_shown_and_holm_counts_every_test_of_the_dataset(tmp_path):
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.30, 1, ALTERNATE))
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.30, 1, {"training": "alternate", "ids": "item"})
                 | {"run_id": "20260101T000002-idgenrec-2"})  # the same per-user values
    sentence = _sentence(render_claims(tmp_path), "user-and-item-ids")
    assert sentence.startswith(f"- Toys: {NOT_SHOWN}.") and "(0/4/0)" in sentence
    # Holm over the 2 x 4 tests of one dataset, by hand: the i-th smallest p-value times (8 - i).
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.05, 4, {"training": "id-only", "ids": "user+item"}))
    write_record(tmp_path, fixture_record("idgenrec", 42, 0.29, 5, {"training": "rec-only", "ids": "user+item"}))
    ours = fixture_record("idgenrec", 42, 0.30, 1)
    metrics = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")
    tests = [(label, m, stats.ttest_rel(ours["per_user"][m], theirs["per_user"][m]).pvalue,
              ours["metrics"][m] > theirs["metrics"][m])
             for label, theirs in (("ID-only", fixture_record("idgenrec", 42, 0.05, 4)),
                                   ("Rec-only", fixture_record("idgenrec", 42, 0.29, 5))) for m in metrics]
    order = sorted(range(8), key=lambda i: tests[i][2])
    adjusted, running = [0.0] * 8, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (8 - rank) * tests[i][2]))
        adjusted[i] = running
    counts = {label: [0, 0, 0] for label in ("ID-only", "Rec-only")}
    for (label, _, _, higher), p in zip(tests, adjusted):
        counts[label][1 if p >= 0.05 else (0 if higher else 2)] += 1
    sentence = _sentence(render_claims(tmp_path), "alternate-training")
    for label, (above, level, below) in counts.items():
        assert f"{label} " in sentence and f"({above}/{level}/{below})" in sentence.split(f"{label} ")[1][:20]
    assert counts["ID-only"] != counts["Rec-only"]  # the fixture separates the two


def test_a_claim_naming_a_column_its_table_lacks_is_refused():
    text = ('[[claim]]\nid = "x"\ntable = "ablation-training"\ncandidate = "Alternate"\nbaselines = ["Nope"]\n'
            'paper = "p"\n')
    with pytest.raises(BenchError, match="f.toml: claim 'x' names column 'Nope', which table 'ablation-training'"):
        parse_claims(tomllib.loads(text)["claim"], "f.toml")
    with pytest.raises(BenchError, match="f.toml: claim 'x' lacks key 'paper'"):
        parse_claims(tomllib.loads(text.replace('paper = "p"\n', ""))["claim"], "f.toml")
