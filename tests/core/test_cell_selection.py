"""A cell takes the configuration with the best validation score, never the newest record;
``bench table --explain`` says which records, by which rule, against which others."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bench.cell_selection import choose, config_digest
from bench.results import all_records, write_record
from bench.table_explain import explain_table
from bench.tables import render_table, table_registry, table_rows
from tests.test_report import USERS, fixture_record

SAMPLE = {"metric": "NDCG@10", "phase": "valid", "users": "sample", "n_users": 50, "of_users": USERS,
          "mask_history": False, "eval_every": 1, "patience": 3}


def engine_record(number: int, rate: float, validation: float, learning_rate: float, seed: int = 42,
                  selection: dict | None = None, diagnostic: bool = False) -> dict:
    """A P5-SID record as the engine's loop leaves it: a validation curve and how it was measured."""
    record = fixture_record("p5-sid", seed, rate, number, {"learning_rate": learning_rate, "epochs": 20},
                            {"selection": selection or SAMPLE, "best_epoch": 2})
    record["training_curve"] = [{"epoch": 1, "validation": {"NDCG@10": validation / 2}},
                                {"epoch": 2, "validation": {"NDCG@10": validation}}]
    return record | {"run_options": {"tracker": "none", "diagnostic": diagnostic}}


def p5_sid_cell(results):
    spec = table_registry().get("standard")[0]
    rows = {metric: cells for _, metric, cells, _ in table_rows(spec, all_records(results))}
    return rows["HR@10"][[column.label for column in spec.columns].index("P5-SID")]


def test_a_worse_diagnostic_and_a_worse_configuration_leave_the_cell_unchanged(tmp_path):
    results = tmp_path / "results"
    chosen = engine_record(1, 0.3, validation=0.05, learning_rate=1e-3)
    write_record(results, chosen)
    before = render_table("standard", results)
    assert p5_sid_cell(results).record["run_id"] == chosen["run_id"]

    # Newer, better on test and even on validation, but marked diagnostic: never fills a cell.
    write_record(results, engine_record(2, 0.6, validation=0.09, learning_rate=5e-3, diagnostic=True))
    assert render_table("standard", results) == before
    # Newer and better on test, worse on the same validation users: not chosen either.
    worse = engine_record(3, 0.6, validation=0.01, learning_rate=1e-2)
    write_record(results, worse)
    assert render_table("standard", results) == before

    explained = explain_table("standard", results)
    line = next(text for text in explained.splitlines() if text.startswith("  P5-SID:"))
    assert "best validation" in line and "50 validation users drawn with seed 42" in line
    chosen_line = explained.splitlines()[explained.splitlines().index(line) + 1]
    assert chosen["run_id"] in chosen_line and config_digest(chosen) in chosen_line and "0.0500" in chosen_line
    assert f"{worse['run_id']}" in explained and "0.0100" in explained and "learning_rate=0.01" in explained
    assert "-p5-sid-000002" not in explained  # the diagnostic is no candidate at all

    cli = subprocess.run([sys.executable, "-m", "bench.cli", "table", "standard", "--explain", "--results-dir",
                          str(results)], capture_output=True, text=True)
    assert cli.returncode == 0 and cli.stdout.strip() == explained


def test_different_validation_users_within_sampling_error_fall_back_to_the_default_and_say_why(tmp_path):
    results = tmp_path / "results"
    # p5-sid's cpu profile samples 2000 validation users; the other run validated on all of them,
    # and leads by less than sampling error on 2,000 users.
    default = engine_record(1, 0.2, validation=0.02, learning_rate=1e-3,
                            selection={**SAMPLE, "n_users": 2000, "of_users": 19412})
    default["config"]["method"]["validation_users"] = 2000
    everyone = engine_record(2, 0.5, validation=0.025, learning_rate=1e-3,
                             selection={**SAMPLE, "users": "all", "n_users": 19412, "of_users": 19412})
    everyone["config"]["method"]["validation_users"] = 0
    for record in (default, everyone):
        write_record(results, record)
    cell = p5_sid_cell(results)
    assert cell.record["run_id"] == default["run_id"]
    assert cell.choice.rule == "default configuration"
    assert "validation users differ" in cell.choice.reason and "validation_users" in cell.choice.reason


def test_a_precision_that_auto_resolved_to_holds_the_default():
    # The runner records what precision=auto (p5-sid's cpu default) resolved to: bf16 on a CPU
    # with it. Such a record is at the default; fp16, which auto never gives, is not.
    default = engine_record(1, 0.2, validation=0.02, learning_rate=1e-3,
                            selection={**SAMPLE, "n_users": 2000, "of_users": 19412})
    default["config"]["method"] |= {"validation_users": 2000, "precision": "bf16"}
    other = engine_record(2, 0.5, validation=0.025, learning_rate=5e-3,
                          selection={**SAMPLE, "users": "all", "n_users": 19412, "of_users": 19412})
    other["config"]["method"] |= {"validation_users": 0, "precision": "fp32"}
    choice = choose([default, other])
    assert choice.rule == "default configuration" and choice.chosen.run_ids == [default["run_id"]]
    assert "precision" in choice.reason
    default["config"]["method"]["precision"] = "fp16"
    assert choose([default, other]).rule == "none"


def test_without_validation_or_a_default_the_cell_stays_empty_and_says_why(tmp_path):
    first = engine_record(1, 0.2, validation=0.02, learning_rate=5e-3)
    second = engine_record(2, 0.5, validation=0.08, learning_rate=2e-3)
    for record in (first, second):
        record.pop("training_curve")
    choice = choose([first, second])
    assert choice.chosen is None and choice.rule == "none"
    assert "no validation score" in choice.reason and len(choice.candidates) == 2


def test_seeds_of_the_chosen_configuration_are_averaged(tmp_path):
    results = tmp_path / "results"
    seeds = [engine_record(number, 0.3, validation=0.05, learning_rate=1e-3, seed=seed)
             for number, seed in ((1, 1), (2, 2))]
    for record in seeds + [engine_record(3, 0.6, validation=0.01, learning_rate=1e-2, seed=1)]:
        write_record(results, record)
    cell = p5_sid_cell(results)
    assert sorted(r["run_id"] for r in cell.records) == sorted(r["run_id"] for r in seeds)
    assert cell.value == pytest.approx(np.mean([r["metrics"]["HR@10"] for r in seeds]))
    assert cell.choice.chosen.validation == pytest.approx(0.05)


def test_a_run_before_and_after_an_added_option_is_one_configuration():
    before = fixture_record("sasrec", 42, 0.3, 1, {"loss_type": "CE", "threads": 1})
    after = fixture_record("sasrec", 42, 0.3, 2, {"loss_type": "CE", "threads": 2, "device": "auto",
                                                  "precision": "fp32"})
    assert config_digest(before) == config_digest(after)
    choice = choose([before, after])
    assert choice.rule == "only configuration" and choice.chosen.run_ids == [after["run_id"]]
    assert choice.chosen.replaced == (before["run_id"],)  # --explain names it


def test_a_wall_clock_stopped_cell_is_marked_with_a_footnote(tmp_path):
    results = tmp_path / "results"
    write_record(results, fixture_record("sasrec", 42, 0.4, 1, {"loss_type": "CE"}, {"stopped_by": "time budget"}))
    write_record(results, fixture_record("gru4rec", 42, 0.2, 2, {"loss_type": "CE"}, {"stopped_by": "max epochs"}))
    text = render_table("standard", results)
    hr10 = next(line for line in text.splitlines() if "| HR@10" in line)
    sasrec = fixture_record("sasrec", 42, 0.4, 1)["metrics"]["HR@10"]
    gru4rec = fixture_record("gru4rec", 42, 0.2, 2)["metrics"]["HR@10"]
    assert f"{sasrec:.4f}†" in hr10 and f"{gru4rec:.4f}†" not in hr10
    assert "†: training stopped by a wall-clock budget" in text
    assert "wall-clock budget" not in render_table("ablation", results)


def test_a_record_without_selection_fields_is_compared_by_its_validation_users_option():
    """SETRec's records made before it recorded ``selection``: the engine sampled its validation
    users from the ``validation_users`` option with the run's seed."""
    records = []
    for number, (validation, sample) in enumerate(((0.05, 0), (0.03, 0), (0.09, 500)), start=1):
        record = engine_record(number, 0.3, validation=validation, learning_rate=10.0 ** -number)
        del record["method_metadata"]["selection"]
        record["config"]["method"]["validation_users"] = sample
        records.append(record)
    same_users = choose(records[:2])
    assert same_users.rule == "best validation" and same_users.chosen.run_ids == [records[0]["run_id"]]
    assert "all validation users" in same_users.reason
    assert choose(records).rule != "best validation"  # 500 sampled users are other users


@pytest.mark.parametrize("sampled_score, everyone_score", [(0.0051, 0.0257), (0.0051, 0.0091), (0.0257, 0.0051)])
def test_a_lead_beyond_sampling_error_on_another_sample_of_the_validation_users_decides(sampled_score,
                                                                                         everyone_score):
    """TIGER's Toys cell: 8 epochs validated on 3,000 sampled users (0.0051) against a long run
    validated on all 19,412 (0.0257). Each score's standard error is at most sqrt(m (1 - m) / n)."""
    sampled = engine_record(1, 0.2, validation=sampled_score, learning_rate=1e-3,
                            selection={**SAMPLE, "n_users": 3000, "of_users": 19412})
    everyone = engine_record(2, 0.5, validation=everyone_score, learning_rate=2e-3,
                             selection={**SAMPLE, "users": "all", "n_users": 19412, "of_users": 19412})
    sampled["config"]["method"]["validation_users"], everyone["config"]["method"]["validation_users"] = 3000, 0
    bound = (sampled_score * (1 - sampled_score) / 3000 + everyone_score * (1 - everyone_score) / 19412) ** 0.5
    lead = abs(everyone_score - sampled_score)
    choice = choose([sampled, everyone])
    if lead > 3.29 * bound:  # a lead of 0.0206 is about 12 bounded standard errors, 0.0040 is 2.3
        winner = everyone if everyone_score > sampled_score else sampled
        assert choice.rule == "best validation" and choice.chosen.run_ids == [winner["run_id"]]
        assert "different samples of the same validation users" in choice.reason
        assert "validation users differ" in choice.reason
    else:
        assert choice.rule != "best validation"
    # Other validation populations (history masked for one) are never compared this way.
    everyone["method_metadata"]["selection"]["mask_history"] = True
    assert choose([sampled, everyone]).rule != "best validation"
