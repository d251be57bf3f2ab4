"""One run: dataset card -> prepared dataset -> split -> fit -> rank -> evaluate -> record.

The work folder of a run is keyed by method, dataset, resolved config and seed, so
starting the same command again after a kill hands the method its checkpoints back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
import random
import subprocess
import time
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from bench import config as config_module
from bench.data.prepare import PROJECT_ROOT, cache_root, dataset_messages, prepare_dataset
from bench.portable_paths import portable
from bench.data.dataset import Dataset
from bench.data.split import Split, make_split
from bench.devices import DeviceConfig, launched_processes, resolve_precision
from bench.evaluation.protocol import PhaseResult, evaluate
from bench.evaluation.stored_ranks import ranks_block
from bench.identity import run_identity
from bench.logs import RUN_LOG_FILE, RunLog
from bench.method import Method, RunContext, TrainingData
from bench.registry import methods
from bench.run_guard import stop_on_signals, work_folder_lock
from bench.results import SCHEMA_VERSION, write_record
from bench.storage import atomic_write_text
from bench.trackers import Tracker, curve_steps, open_tracker

if TYPE_CHECKING:
    from bench.runtime import Runtime
    from bench.evaluation.metrics import SubsetResult

# In a work folder: the record its last finished run wrote (a run that waited for it reads it).
LAST_RECORD = "last-record.json"
# Record fields that may hold paths of this machine: written portable (bench.portable_paths).
PATH_FIELDS = ("dataset_source", "method_metadata", "log_file", "tracker_folder")
# A work folder is named by the first 12 hex digits of the run identity.
WORK_DIR_DIGEST = 12
RECORDED_PACKAGES = ("genrec-bench", "torch", "transformers", "sentencepiece", "recbole", "numpy", "scipy", "pandas")


@dataclasses.dataclass(frozen=True)
class RunRequest:
    method: str
    dataset: str
    data_dir: Path | None = None
    config_file: Path | None = None
    sets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    seed: int = 42
    profile: str = "cpu"
    results_dir: Path = Path("results")
    show_progress: bool = True
    # Another run holding this configuration's work folder: wait for it (True) or stop at once.
    wait: bool = True


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def resolve_run_config(request: RunRequest) -> tuple[type[Method], config_module.ResolvedConfig]:
    method_class: type[Method] = methods().get(request.method)
    file_values = config_module.read_config_file(request.config_file) if request.config_file else {}
    resolved = config_module.resolve(request.method, method_class.config_class, method_class.profiles,
                                     request.profile, file_values, request.sets)
    return method_class, resolved


def _work_dir(request: RunRequest, config: dict[str, Any], data_digest: str) -> Path:
    digest = run_identity(request.method, request.dataset, data_digest, config, request.seed)[:WORK_DIR_DIGEST]
    return cache_root() / "work" / f"{request.method}-{request.dataset}-{digest}"


def work_dir_for(request: RunRequest, resolved: config_module.ResolvedConfig, data_digest: str) -> Path:
    """The run's work folder, keyed by its identity. A run made before some of the method's
    options existed (``added_later``, here at their default) keyed its folder without them: when
    only that folder exists it is the run's, so its command re-evaluates it instead of training anew."""
    folder = _work_dir(request, resolved.to_dict(), data_digest)
    earlier = _work_dir(request, resolved.before_added_options(), data_digest)
    return earlier if not folder.exists() and earlier.is_dir() else folder


def _metrics_field(suffix: str, measured: "SubsetResult") -> dict[str, Any]:
    """A block's mean metrics; its per-user values derive from the record's ranks."""
    return {f"metrics_{suffix}": {name: round(value, 6) for name, value in measured.means().items()}}


def warm_cold_fields(result: PhaseResult) -> dict[str, Any]:
    """``metrics_warm``/``metrics_cold`` and the counts of their targets and users, and when the
    evaluator ranked them within their group ``metrics_warm_in_group`` / ``metrics_cold_in_group``;
    leave-one-out records carry them only when some test target is cold. Their per-user values
    derive from the record's ranks (:mod:`bench.evaluation.stored_ranks`)."""
    if not result.reports_groups:
        return {}
    fields: dict[str, Any] = {"warm_cold": {}}
    for label, subset, in_group in (("warm", result.warm, result.warm_in_group),
                                    ("cold", result.cold, result.cold_in_group)):
        fields["warm_cold"][f"{label}_targets"] = subset.targets if subset else 0
        fields["warm_cold"][f"{label}_users"] = int(len(subset.users)) if subset else 0
        for suffix, measured in ((label, subset), (f"{label}_in_group", in_group)):
            if measured is not None:
                fields.update(_metrics_field(suffix, measured))
    return fields


def repeat_novel_fields(result: PhaseResult) -> dict[str, Any]:
    """``metrics_repeat``/``metrics_novel`` and the counts in ``repeat_novel``, when some target is
    an item of its user's history (docs/evaluation.md); their per-user values and users derive
    from the record's ranks (the ``repeat`` partition of :mod:`bench.evaluation.stored_ranks`)."""
    if result.repeat is None:
        return {}
    fields: dict[str, Any] = {"repeat_novel": {
        "repeat_targets": result.repeat.targets, "repeat_users": int(len(result.repeat.users)),
        "novel_targets": result.novel.targets if result.novel else 0,
        "novel_users": int(len(result.novel.users)) if result.novel else 0,
        "repeat_share": round(result.repeat.targets / len(result.repeat_targets), 6)}}
    for label, subset in (("repeat", result.repeat), ("novel", result.novel)):
        if subset is not None:
            fields.update(_metrics_field(label, subset))
    return fields


def log_to_tracker(tracker: Tracker, curve: list[dict[str, Any]], test_metrics: Mapping[str, float]) -> None:
    """The recorded curve, unless the engine's loop logged it live, then the test metrics."""
    steps = curve_steps(curve)
    if tracker.steps_logged == 0:
        for step, values in steps:
            tracker.log(values, step=step)
    tracker.log({f"test/{name}": value for name, value in test_metrics.items()},
                step=max((step for step, _ in steps), default=0))


def start_run_runtime(method_class: type[Method], method_name: str, method_config: Any) -> Runtime:
    """This process's runtime from the method's ``DeviceConfig`` options (a method without them
    runs on the CPU); refuses several processes for a method that cannot use them."""
    from bench.launch import check_method_processes
    from bench.runtime import start_runtime

    check_method_processes(method_class, method_name, launched_processes())
    return start_runtime(method_config if isinstance(method_config, DeviceConfig) else None)


def execute(request: RunRequest, log=print) -> Path | None:
    """Run one method on one dataset and write its record; returns the record's path (None
    on every process but the main one of a multi-process run: only the main one writes).
    Everything the run says goes to ``run.log`` in its work folder (:mod:`bench.logs`); ``log``
    shows the harness's messages, only warnings when ``request.show_progress`` is off."""
    with RunLog(echo=log, quiet=not request.show_progress) as run_log, stop_on_signals():
        return _execute(request, run_log)


def resolve_on_this_machine(resolved: config_module.ResolvedConfig) -> config_module.ResolvedConfig:
    """``precision=auto`` made concrete for this machine (bf16 where the hardware has it), so
    the record and the work folder name what ran. A sweep keeps ``auto`` in its identity: it
    may resolve configs on a node that is not the one that runs them."""
    method = resolved.method
    if not isinstance(method, DeviceConfig) or method.precision != "auto":
        return resolved
    concrete = resolve_precision(method.device, method.precision)
    return dataclasses.replace(resolved, method=dataclasses.replace(method, precision=concrete))


def _execute(request: RunRequest, log: RunLog) -> Path | None:
    method_class, resolved = resolve_run_config(request)
    resolved = resolve_on_this_machine(resolved)
    runtime = start_run_runtime(method_class, request.method, resolved.method)
    if not runtime.is_main_process:
        log.echo = lambda message: None  # the main process says it once
    dataset = prepare_dataset(request.dataset, request.data_dir, resolved.data)
    if dataset.metadata.get("dropped_users_fewer_than_3"):
        log(f"warning: dataset {dataset.name}: dropped {dataset.metadata['dropped_users_fewer_than_3']} users "
            "with fewer than 3 interactions")
    for line in dataset_messages(dataset):
        log(line)
    dataset, split = make_split(dataset, resolved.evaluation.protocol)
    context = RunContext(work_dir=work_dir_for(request, resolved, split.digest()), seed=request.seed,
                         profile=resolved.profile, show_progress=request.show_progress and runtime.is_main_process,
                         runtime=runtime)
    context.work_dir.mkdir(parents=True, exist_ok=True)
    # One run of a configuration at a time in its folder: another waits, then finds the finished model.
    with work_folder_lock(context.work_dir, request.wait, log, runtime.process_index,
                          runtime.num_processes) as waited_since:
        written = record_written_since(context.work_dir, request.results_dir, waited_since)
        if written is not None:  # the run waited for did all of it: nothing is written twice
            log(f"the run it waited for wrote this configuration's record: {written}")
            return written if runtime.is_main_process else None
        return _fit_and_record(request, log, method_class, resolved, runtime, dataset, split, context)


def record_written_since(work_dir: Path, results_dir: Path, since: float | None) -> Path | None:
    """The record another run of this work folder wrote into this store while this run waited
    for it (``LAST_RECORD`` names it), or None."""
    marker = work_dir / LAST_RECORD
    if since is None or not marker.is_file() or marker.stat().st_mtime < since:
        return None
    try:
        path = Path(json.loads(marker.read_text())["path"])
    except (ValueError, KeyError, TypeError):
        return None
    return path if path.is_file() and path.is_relative_to(Path(results_dir).resolve()) else None


def _fit_and_record(request: RunRequest, log: RunLog, method_class: type[Method],
                    resolved: config_module.ResolvedConfig, runtime: Runtime, dataset: Dataset, split: Split,
                    context: RunContext) -> Path | None:
    log_name = RUN_LOG_FILE if runtime.is_main_process else f"run-process{runtime.process_index}.log"
    log.to_file(context.work_dir / log_name)
    if context.work_dir != _work_dir(request, resolved.to_dict(), split.digest()):
        log(f"work folder {context.work_dir.name}: made before options this run's config holds at their defaults")
    seed_everything(request.seed)
    started = dt.datetime.now(dt.timezone.utc)
    run_id = f"{started:%Y%m%dT%H%M%S}-{request.method}-{uuid.uuid4().hex[:6]}"
    tracker = open_tracker(resolved.run.tracker, context.work_dir, run_id, resolved.to_dict()) \
        if runtime.is_main_process else None
    context = dataclasses.replace(context, tracker=tracker)
    method = method_class(resolved.method, context)
    try:
        clock = time.perf_counter()
        method.fit(TrainingData(dataset=dataset, split=split))
        fit_seconds = time.perf_counter() - clock
        clock = time.perf_counter()
        test = evaluate(method, split, "test", resolved.evaluation, context, in_group=True)
        validation = evaluate(method, split, "valid", resolved.evaluation, context) \
            if resolved.evaluation.include_validation else None
        evaluate_seconds = time.perf_counter() - clock
        metadata = method.metadata()
        if tracker is not None:
            log_to_tracker(tracker, metadata.get("training_curve", []), test.means())
    finally:
        if tracker is not None:
            tracker.finish()
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "method": request.method,
        "dataset": request.dataset,
        "dataset_summary": dataset.summary(),
        "dataset_source": {k: v for k, v in dataset.metadata.items() if k != "card"},
        "split": {"protocol": split.protocol, "digest": split.digest(), "phase": "test", **split.summary()},
        "profile": resolved.profile,
        "config": resolved.to_dict(),
        "seed": request.seed,
        "versions": package_versions(),
        "hardware": runtime.hardware(),
        "git_commit": git_commit(),
        "started_at": started.isoformat(timespec="seconds"),
        "wall_time_seconds": {"fit": round(fit_seconds, 2), "evaluate": round(evaluate_seconds, 2)},
        "metrics": {name: round(value, 6) for name, value in test.means().items()},
        "ties": {"users_with_tied_target": test.tied_users, "tied_items_total": test.tied_items_total},
        "method_metadata": method.metadata(),
        "ranks": ranks_block(test),
        "inference": test.inference(),
        "log_file": str(log.path),
        "run_options": dataclasses.asdict(resolved.run),
        **({"tracker_folder": str(tracker.folder)} if tracker is not None else {}),
        **warm_cold_fields(test),
        **repeat_novel_fields(test),
    }
    for key in PATH_FIELDS:
        if key in record:
            record[key] = portable(record[key], PROJECT_ROOT, cache_root())
    if validation is not None:
        record["validation_metrics"] = {name: round(value, 6) for name, value in validation.means().items()}
    if "training_curve" in record["method_metadata"]:
        # Model selection's evidence, one entry per validated epoch (bench.engine.selection).
        record["training_curve"] = record["method_metadata"].pop("training_curve")
    if not runtime.is_main_process:
        return None
    path = write_record(request.results_dir, record)
    atomic_write_text(context.work_dir / LAST_RECORD, json.dumps({"path": str(path.resolve())}))
    return path
