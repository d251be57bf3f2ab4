"""A run's cost is read the same way from every record format, and a table's cost sums the
records behind its cells once each (``bench table NAME --cost``)."""

from __future__ import annotations

import pytest

from bench.results import write_record
from bench.run_cost import run_cost
from bench.table_cost import cost_table
from tests.core.test_cell_selection import engine_record


def record(metadata: dict, fit: float = 10.0, evaluate: float = 2.0, processes: int = 1, curve=()) -> dict:
    return {"method_metadata": metadata, "wall_time_seconds": {"fit": fit, "evaluate": evaluate},
            "hardware": {"processes": processes}, "training_curve": list(curve)}


def test_an_engine_training_counts_its_cpu_time_when_that_covers_every_epoch():
    cost = run_cost(record({"train_seconds": 900.0, "validation_seconds": 100.0, "cpu_seconds": 600.0,
                            "resumed_from_epoch": 0, "rqvae_seconds": 50.0}))
    assert (cost.training, cost.test, cost.cpu) == (650.0, 2.0, 600.0)


def test_a_resume_from_a_checkpoint_that_did_not_count_cpu_time_falls_back_to_wall_time():
    metadata = {"train_seconds": 900.0, "validation_seconds": 100.0, "cpu_seconds": 300.0, "resumed_from_epoch": 4}
    partial = [{"epoch": 2}, {"epoch": 6, "cpu_seconds": 300.0}]
    assert run_cost(record(metadata, curve=partial)).training == 1000.0
    assert run_cost(record(metadata, processes=2, curve=partial)).training == 2000.0  # wall time per process
    covered = [{"epoch": 2, "cpu_seconds": 100.0}, {"epoch": 6, "cpu_seconds": 300.0}]
    assert run_cost(record(metadata, curve=covered)).training == 300.0


def test_a_reused_pre_training_counts_with_the_run_that_made_it_and_embedding_seconds_are_summed():
    metadata = {"pretraining": {"train_seconds": 4000.0, "validation_seconds": 500.0, "reused": True},
                "fine_tuning": {"train_seconds": 30.0, "validation_seconds": 5.0},
                "text_embedding_seconds": {"evaluated items": 20.0, "source items": 0.5}}
    assert run_cost(record(metadata)).training == pytest.approx(55.5)


def test_recbole_counts_at_least_the_fit_which_holds_s3rec_pre_training():
    assert run_cost(record({"training_seconds": 2400.0}, fit=7600.0)).training == 7600.0
    assert run_cost(record({"training_seconds": 12000.0}, fit=5600.0)).training == 12000.0  # resumed
    tokenizer = {"training_seconds": 4000.0, "reused": False}
    setrec = {"training": {"train_seconds": 100.0, "validation_seconds": 10.0}, "cf_tokenizer": tokenizer}
    assert run_cost(record(setrec)).training == 4110.0
    assert run_cost(record(setrec | {"cf_tokenizer": tokenizer | {"reused": True}})).training == 110.0


def test_idgenrec_phases_and_methods_without_recorded_training():
    schedule = [{"kind": "recommender", "seconds": 3600.0, "cpu_seconds": 3000.0, "resumed_from_epoch": 0},
                {"kind": "generator", "seconds": 1200.0}]
    cost = run_cost(record({"schedule": schedule, "start_seconds": 8.0}))
    assert (cost.training, cost.cpu) == (4208.0, 3000.0)
    assert run_cost(record({}, fit=365.0)).training == 365.0  # item-kNN: its fit is the whole training


def test_the_table_cost_counts_a_record_once_and_chosen_apart_from_all(tmp_path):
    results = tmp_path / "results"
    chosen = engine_record(1, 0.3, validation=0.05, learning_rate=1e-3)
    chosen["method_metadata"] |= {"train_seconds": 3600.0, "validation_seconds": 0.0}
    lost = engine_record(2, 0.3, validation=0.01, learning_rate=1e-2)
    lost["method_metadata"] |= {"train_seconds": 7200.0, "validation_seconds": 0.0}
    for item in (chosen, lost):
        item["wall_time_seconds"] = {"fit": 1.0, "evaluate": 360.0}
        write_record(results, item)
    row = next(line for line in cost_table("standard", results).splitlines() if line.startswith("| toys"))
    cells = [part.strip() for part in row.strip("|").split("|")]
    assert cells[2:] == ["1.00", "0.10", "0%", "3.20"]
