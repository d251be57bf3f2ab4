"""Experiment trackers (``--set tracker=tensorboard|mlflow|wandb``) through Accelerate's
tracking API, on the main process only, writing local files under the run's work folder.

The engine's loop logs each epoch as it ends (train loss and seconds; validation metrics and
seconds when it validates); for a method trained otherwise (RecBole's trainer) the runner
logs the recorded curve after ``fit``; the runner logs the final test metrics last.
docs/trackers.md says how to open each.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError

# The package each tracker needs, named in the error when it is missing (pyproject extras).
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
            "wandb": ("wandb", "wandb")}


def tracker_folder(work_dir: Path, kind: str) -> Path:
    """Where a tracker writes: ``<work folder>/trackers/<kind>`` (one run per run id inside)."""
    return Path(work_dir) / "trackers" / kind


class Tracker:
    """One run's tracker: ``log(values, step)`` for a curve, ``finish()`` once at the end."""

    def __init__(self, kind: str, folder: Path, run_name: str, config: Mapping[str, Any]) -> None:
        module, extra = PACKAGES[kind]
        try:
            __import__(module)
        except ImportError:
            raise BenchError(f"--set tracker={kind}: the package '{module}' is not installed; "
                             f"pip install 'genrec-bench[{extra}]'") from None
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

        self.kind, self.folder, self.steps_logged = kind, Path(folder), 0
        self.folder.mkdir(parents=True, exist_ok=True)
        if kind == "tensorboard":
            self.tracker = TensorBoardTracker(run_name, self.folder)
        elif kind == "mlflow":
            import mlflow

            # A file store under the work folder: nothing leaves the machine, no database to set up.
            # MLflow 3 keeps that store in maintenance mode and asks for this opt-in to use it.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(self.folder.as_uri())
            self.tracker = MLflowTracker(experiment_name="genrec-bench", logging_dir=self.folder.as_uri(),
                                         run_name=run_name)
        else:
            os.environ.setdefault("WANDB_MODE", "offline")  # written under folder; `wandb sync` uploads it later
            self.tracker = WandBTracker("genrec-bench", dir=str(self.folder), name=run_name)  # project, run
        self.tracker.start()  # Accelerate opens the writer here (on the main process)
        self.tracker.store_init_configuration(_flat(config))

    def log(self, values: Mapping[str, float], step: int) -> None:
        if self.kind == "mlflow":  # MLflow refuses '@' in a metric name: NDCG@10 is logged as NDCG_10
            values = {name.replace("@", "_"): value for name, value in values.items()}
        self.tracker.log(dict(values), step=step)
        self.steps_logged += 1

    def finish(self) -> None:
        self.tracker.finish()


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as ``part.key`` scalars (what every tracker's hyper-parameter view takes)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def open_tracker(kind: str, work_dir: Path, run_name: str, config: Mapping[str, Any]) -> Tracker | None:
    """The run's tracker (None for ``tracker=none``); call on the main process only."""
    return None if kind == "none" else Tracker(kind, tracker_folder(work_dir, kind), run_name, config)


def curve_steps(curve: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """A recorded training curve as tracker steps: ``train/loss``, ``train/seconds``,
    ``validation/<metric>`` and ``validation/seconds`` by epoch (the keys the loop logs live)."""
    steps = []
    for number, entry in enumerate(curve):
        values = {f"validation/{name}": value for name, value in entry.get("validation", {}).items()
                  if isinstance(value, (int, float))}
        for key, name in (("train_loss", "train/loss"), ("train_seconds", "train/seconds"),
                          ("validation_seconds", "validation/seconds")):
            if isinstance(entry.get(key), (int, float)):
                values[name] = entry[key]
        steps.append((int(entry.get("epoch", number)), values))
    return steps
