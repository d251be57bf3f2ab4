"""``--set tracker=...``: the training curve and the final metrics reach the tracker's own
files, read back here with the tracker's own reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.portable_paths import local_path
from tests.test_distributed import TINY_T5, environment, write_tiny_atomic_dataset

OPTIONS = {**TINY_T5, "epochs": 3, "eval_every": 1, "patience": 0}


def run_with_tracker(data: Path, cache: Path, results: Path, tracker: str) -> dict:
    sets = [part for key, value in {**OPTIONS, "tracker": tracker}.items() for part in ("--set", f"{key}={value}")]
    finished = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--method", "p5-sid", "--dataset", "tiny",
                               "--data-dir", str(data), "--quiet", *sets, "--results-dir", str(results)],
                              env=environment(cache), capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(Path(finished.stdout.strip().splitlines()[-1]).read_text())


def validation_curve(record: dict) -> list[tuple[int, float]]:
    return [(entry["epoch"], entry["validation"]["NDCG@10"]) for entry in record["training_curve"]]


def test_tensorboard_and_mlflow_hold_the_validation_curve_and_the_test_metrics(tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data, cache = tmp_path / "tiny", tmp_path / "cache"
    write_tiny_atomic_dataset(data)
    # TensorBoard: logged by the engine's loop as each epoch ends.
    record = run_with_tracker(data, cache, tmp_path / "results-tb", "tensorboard")
    assert record["run_options"]["tracker"] == "tensorboard" and len(record["training_curve"]) == 3
    events = EventAccumulator(str(local_path(record["tracker_folder"], cache) / record["run_id"])).Reload()
    logged = [(event.step, event.value) for event in events.Scalars("validation/NDCG@10")]
    assert [step for step, _ in logged] == [1, 2, 3]
    assert [value for _, value in logged] == pytest.approx([value for _, value in validation_curve(record)], abs=1e-6)
    assert len(events.Scalars("train/loss")) == 3
    assert events.Scalars("test/HR@10")[-1].value == pytest.approx(record["metrics"]["HR@10"], abs=1e-6)

    # MLflow: the same configuration again reuses the finished training, so the runner logs the
    # recorded curve; a file store under the work folder, read with MLflow's client.
    again = run_with_tracker(data, cache, tmp_path / "results-mlflow", "mlflow")
    assert validation_curve(again) == validation_curve(record)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the run sets it (docs/trackers.md)
    client = MlflowClient(tracking_uri=local_path(again["tracker_folder"], cache).as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("genrec-bench").experiment_id],
                                filter_string=f"attributes.run_name = '{again['run_id']}'")
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "validation/NDCG_10"))
    assert [step for step, _ in history] == [1, 2, 3]
    assert [value for _, value in history] == pytest.approx([value for _, value in validation_curve(again)], abs=1e-6)
    assert run.data.metrics["test/HR_10"] == pytest.approx(again["metrics"]["HR@10"], abs=1e-6)
    assert run.data.params["method.epochs"] == "3"


def test_wandb_writes_an_offline_run(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    data, cache = tmp_path / "tiny", tmp_path / "cache"
    write_tiny_atomic_dataset(data)
    record = run_with_tracker(data, cache, tmp_path / "results", "wandb")
    (run,) = local_path(record["tracker_folder"], cache).glob("wandb/offline-run-*")
    assert list(run.glob("run-*.wandb"))  # the run's data file, for `wandb sync`


def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch) -> None:
    from bench.errors import BenchError
    from bench.trackers import open_tracker

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(BenchError, match=r"genrec-bench\[wandb\]"):
        open_tracker("wandb", tmp_path, "run", {})
