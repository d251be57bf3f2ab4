"""``bench sweep``: a grid of runs read from a TOML file, run on local worker processes or
on SLURM through submitit, skipping every run whose record is already in the store.

A run's identity is what keys its work folder (:func:`bench.runner.work_dir_for`): method,
dataset, data fingerprint (the split digest), resolved config and seed. A run whose
identity matches a record in the store is done and is not started again; a run that died
is started again with the same request, through the same runner as ``bench run``, so it
finds its work folder and resumes from its checkpoints.

The file format is documented in docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Options, option
from bench.errors import BenchError
from bench.identity import record_identity, recorded_configs, run_identity

SWEEP_KEYS = ("name", "methods", "datasets", "data_dirs", "seeds", "profile", "set", "group", "slurm")
GROUP_KEYS = ("name", "methods", "datasets", "seeds", "profile", "set")
# Sub-tables of [set] that address the protocol and the data preparation, not a method.
PREFIX_TABLES = ("eval", "data")
# Keys of a run's config whose value says how many CPU threads the method itself will use.
THREAD_KEYS = ("threads",)


@dataclasses.dataclass(frozen=True)
class SlurmOptions(Options):
    """Resources of one SLURM job (one run); the ``[slurm]`` table of a sweep file or flags."""

    option_word = "slurm option"

    partition: str | None = option(None, "SLURM partition (default: the cluster's default)")
    time_minutes: int = option(24 * 60, "wall-time limit of each job, in minutes", range=AT_LEAST_ONE)
    gpus_per_job: int = option(0, "GPUs per job (one run per job)", range=NON_NEGATIVE)
    cpus_per_job: int = option(2, "CPU cores per job; also the run's thread budget", range=AT_LEAST_ONE)
    mem_gb: float = option(16.0, "memory per job, GiB", range=POSITIVE)
    max_parallel: int = option(0, "most jobs of the array running at once (0: submitit's default)", range=NON_NEGATIVE)
    setup: tuple[str, ...] = option((), "shell lines run before each job (module load, conda activate, ...)")
    account: str | None = option(None, "SLURM account to charge")
    requeue: bool = option(True, "sbatch --requeue: a preempted job goes back to the queue and resumes from its "
                                 "last checkpoint")
    signal_delay_s: int = option(90, "seconds before the time limit at which SLURM sends the warning signal: the "
                                     "run stops at its next safe point and the job is requeued", range=NON_NEGATIVE)
    max_timeouts: int = option(3, "times a job that reaches its time limit is requeued to resume (preemptions are "
                                  "not counted)", range=NON_NEGATIVE)



@dataclasses.dataclass(frozen=True)
class GridPoint:
    """One run of the grid before it is resolved: what the TOML file asks for."""

    group: str
    method: str
    dataset: str
    seed: int
    sets: tuple[tuple[str, Any], ...]
    varied: tuple[str, ...]  # keys whose value came from a list (shown in the run's label)
    profile: str

    @property
    def label(self) -> str:
        values = dict(self.sets)
        parts = [f"seed {self.seed}"] + [f"{key}={values[key]}" for key in self.varied]
        group = f"[{self.group}] " if self.group else ""
        return f"{group}{self.method} on {self.dataset} ({', '.join(parts)})"


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    name: str
    path: Path
    points: tuple[GridPoint, ...]
    data_dirs: Mapping[str, Path]
    slurm: SlurmOptions


def _fail(path: Path, message: str) -> BenchError:
    return BenchError(f"{path}: {message}")


def _check_keys(path: Path, where: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _fail(path, f"unknown key '{key}' in {where}{hint}; allowed: {', '.join(allowed)}")


def _string_list(path: Path, where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(path, f"'{where}' must be a non-empty list of names")
    return list(value)


def _seed_list(path: Path, where: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                          for v in value):
        raise _fail(path, f"'{where}' must be a non-empty list of integers")
    return list(value)


def _overrides_for(path: Path, where: str, table: Mapping[str, Any], method: str,
                   all_methods: set[str]) -> dict[str, Any]:
    """The ``--set`` values of one method from a ``set`` table: plain keys apply to every method,
    a ``[set.<method>]`` sub-table to that method only, ``[set.eval]`` to the protocol."""
    common: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in table.items():
        if not isinstance(value, dict) or key in PREFIX_TABLES:
            common.update(_flatten_eval({key: value}))
        elif key not in all_methods:
            raise _fail(path, f"[{where}.{key}]: '{key}' is not a method of this sweep")
        elif key == method:
            own.update(_flatten_eval(value))
    return {**common, **own}


def _flatten_eval(table: Mapping[str, Any]) -> dict[str, Any]:
    """An ``eval`` (or ``data``) sub-table becomes ``eval.<key>`` keys, as in a ``--config`` file."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key in PREFIX_TABLES and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _expand(overrides: Mapping[str, Any]) -> list[tuple[tuple[tuple[str, Any], ...], tuple[str, ...]]]:
    """Every combination of the list-valued overrides (a list expands into the grid)."""
    varied = tuple(key for key, value in overrides.items() if isinstance(value, list))
    fixed = [(key, value) for key, value in overrides.items() if key not in varied]
    combinations = []
    for values in itertools.product(*(overrides[key] for key in varied)):
        combinations.append((tuple(fixed) + tuple(zip(varied, values)), varied))
    return combinations


def load_sweep(path: Path, slurm_flags: Mapping[str, Any] | None = None) -> SweepSpec:
    """Read and check a sweep file; flags given on the command line win over its ``[slurm]`` table."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: sweep file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise _fail(path, f"not a valid TOML file: {error}") from None
    _check_keys(path, "the sweep file", data, SWEEP_KEYS)
    groups = data.get("group", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise _fail(path, "'group' must be an array of tables ([[group]])")
    if "methods" not in data and not groups:
        raise _fail(path, "no 'methods' and no [[group]]: the sweep has no runs")
    top_set = data.get("set", {})
    entries = []  # (group name, methods, datasets, seeds, profile, group set table)
    defaults = {"datasets": _string_list(path, "datasets", data.get("datasets")),
                "seeds": _seed_list(path, "seeds", data.get("seeds", [42])), "profile": data.get("profile", "cpu")}
    if "methods" in data:
        entries.append(("", _string_list(path, "methods", data["methods"]), defaults["datasets"],
                        defaults["seeds"], defaults["profile"], {}))
    for number, group in enumerate(groups, 1):
        where = f"[[group]] {number}"
        _check_keys(path, where, group, GROUP_KEYS)
        name = str(group.get("name", f"group-{number}"))
        entries.append((name, _string_list(path, f"{where}: methods", group.get("methods")),
                        _string_list(path, f"{where}: datasets", group.get("datasets", defaults["datasets"])),
                        _seed_list(path, f"{where}: seeds", group.get("seeds", defaults["seeds"])),
                        group.get("profile", defaults["profile"]), group.get("set", {})))
    all_methods = {method for entry in entries for method in entry[1]}
    points = []
    for group_name, group_methods, datasets, seeds, profile, group_set in entries:
        for method in group_methods:
            overrides = {**_overrides_for(path, "set", top_set, method, all_methods),
                         **_overrides_for(path, f"group.{group_name}.set", group_set, method, all_methods)}
            for sets, varied in _expand(overrides):
                points.extend(GridPoint(group_name, method, dataset, seed, sets, varied, profile)
                              for dataset in datasets for seed in seeds)
    data_dirs = data.get("data_dirs", {})
    if not isinstance(data_dirs, dict):
        raise _fail(path, "[data_dirs] must map dataset names to folders")
    # Relative folders are read from the current directory, as `bench run --data-dir` reads them.
    resolved_dirs = {name: Path(folder).resolve() for name, folder in data_dirs.items()}
    slurm_values = dict(data.get("slurm", {}))
    _check_keys(path, "[slurm]", slurm_values, [f.name for f in dataclasses.fields(SlurmOptions)])
    slurm_values.update({k: v for k, v in (slurm_flags or {}).items() if v is not None})
    return SweepSpec(name=str(data.get("name", path.stem)), path=path, points=tuple(points),
                     data_dirs=resolved_dirs, slurm=_slurm_options(path, slurm_values))


ONLY_FIELDS = ("method", "dataset", "seed", "group")


def select_points(spec: SweepSpec, only: Sequence[str]) -> SweepSpec:
    """The part of the grid that ``--only FIELD=VALUE[,VALUE...]`` filters keep (every filter
    must hold), e.g. to spread one sweep file over two machines or to rerun one method."""
    points = spec.points
    for text in only:
        field, _, values = text.partition("=")
        if field not in ONLY_FIELDS or not values:
            raise BenchError(f"--only {text!r}: expected FIELD=VALUE[,VALUE...] with FIELD one of "
                             f"{', '.join(ONLY_FIELDS)}")
        wanted = {value.strip() for value in values.split(",")}
        kept = tuple(point for point in points if str(getattr(point, field)) in wanted)
        if not kept:
            present = sorted({str(getattr(point, field)) for point in points})
            raise BenchError(f"--only {text}: no run of sweep {spec.name} ({spec.path}) matches; its "
                             f"{field} values are {', '.join(present) or 'none'}")
        points = kept
    return dataclasses.replace(spec, points=points)


def _slurm_options(path: Path, values: dict[str, Any]) -> SlurmOptions:
    expected = {"partition": str, "account": str, "time_minutes": int, "gpus_per_job": int, "cpus_per_job": int,
                "max_parallel": int, "mem_gb": (int, float), "setup": list, "requeue": bool, "signal_delay_s": int,
                "max_timeouts": int}
    for key, value in values.items():
        if not isinstance(value, expected[key]) or (isinstance(value, bool) and expected[key] is not bool):
            raise _fail(path, f"[slurm]: '{key}' has the wrong type ({type(value).__name__}: {value!r})")
    if "setup" in values:
        values["setup"] = tuple(str(line) for line in values["setup"])
    try:
        return SlurmOptions(**values)
    except BenchError as error:
        raise _fail(path, f"[slurm]: {error}") from None


@dataclasses.dataclass(frozen=True)
class RunTask:
    """One resolved run of the grid: everything a worker needs, picklable (for submitit)."""

    label: str
    method: str
    dataset: str
    data_dir: str | None
    sets: tuple[tuple[str, Any], ...]
    seed: int
    profile: str
    results_dir: str
    identity: str
    log_path: str
    threads_asked: int | None  # the run's own thread setting, if its method has one
    processes: int = 1  # > 1: started through the engine's multi-process launcher (bench/launch.py)

    def run_arguments(self) -> list[str]:
        """The same run as ``bench run`` arguments (for the multi-process launcher)."""
        arguments = ["run", "--method", self.method, "--dataset", self.dataset, "--seed", str(self.seed),
                     "--profile", self.profile, "--results-dir", self.results_dir, "--quiet", "--no-wait"]
        if self.data_dir:
            arguments += ["--data-dir", self.data_dir]
        for key, value in self.sets:
            arguments += ["--set", f"{key}={_set_text(value)}"]
        return arguments

    def request(self):
        from bench.runner import RunRequest
        return RunRequest(method=self.method, dataset=self.dataset,
                          data_dir=Path(self.data_dir) if self.data_dir else None, sets=dict(self.sets),
                          seed=self.seed, profile=self.profile, results_dir=Path(self.results_dir),
                          show_progress=False, wait=False)


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d):\d\d,\d+ \w+ [\w.]+: (.*)$")
_EPOCH = re.compile(r"(^|\s)epoch \d+")  # "setrec epoch 6/20: ...", RecBole's "epoch 9 evaluating [...]"


def work_folder_state(task: RunTask, width: int = 160) -> str:
    """For a run that is not done: "new" when it has no run log yet, else the last epoch line
    of its log (a killed run resumes from its checkpoints: ``bench sweep --dry-run`` shows where)."""
    from bench.logs import RUN_LOG_FILE

    run_log = Path(task.log_path).parent / RUN_LOG_FILE
    if not run_log.is_file():
        return "new"
    with open(run_log, "rb") as handle:
        handle.seek(max(0, run_log.stat().st_size - 65536))
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    last = next((match for line in reversed(lines) if (match := _LOG_LINE.match(line)) and _EPOCH.search(match[2])),
                None)
    state = f"started, last epoch line {last[1]}: {last[2]}" if last else "started, no epoch logged yet"
    return state if len(state) <= width else state[:width - 3] + "..."


def _set_text(value: Any) -> str:
    """A TOML value as ``--set`` text that config resolution reads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(_set_text(item) for item in value)
    return str(value)


@dataclasses.dataclass
class SweepPlan:
    spec: SweepSpec
    tasks: list[RunTask]
    done: dict[str, str]  # identity -> path of the record that makes it done

    @property
    def todo(self) -> list[RunTask]:
        return [task for task in self.tasks if task.identity not in self.done]


def _data_digest(request, resolved, known: dict[str, str]) -> str:
    """The split digest the runner will record for this request: the data as ``bench.runner.execute``
    prepares and splits it (dataset, folder, ``data.*`` options, ``eval.protocol``)."""
    from bench.data.prepare import prepare_dataset
    from bench.data.split import make_split

    key = json.dumps([request.dataset, str(request.data_dir), dataclasses.asdict(resolved.data),
                      resolved.evaluation.protocol])
    if key not in known:
        dataset = prepare_dataset(request.dataset, request.data_dir, resolved.data)
        known[key] = make_split(dataset, resolved.evaluation.protocol)[1].digest()
    return known[key]


def plan_sweep(spec: SweepSpec, results_dir: Path) -> SweepPlan:
    """Resolve every grid point (an error names the sweep file and the run) and look up which
    runs the store already holds."""
    from bench.results import all_records
    from bench.runner import RunRequest, resolve_on_this_machine, resolve_run_config, work_dir_for

    digests: dict[str, str] = {}
    tasks: dict[str, RunTask] = {}
    earlier: dict[str, str] = {}  # other identities a record of a planned run can have -> the run's
    for point in spec.points:
        data_dir = spec.data_dirs.get(point.dataset)
        request = RunRequest(method=point.method, dataset=point.dataset, data_dir=data_dir, sets=dict(point.sets),
                             seed=point.seed, profile=point.profile, results_dir=results_dir)
        try:
            _, resolved = resolve_run_config(request)
            digest = _data_digest(request, resolved, digests)
        except BenchError as error:
            raise _fail(spec.path, f"{point.label}: {error}") from None
        config = resolved.to_dict()
        identity = run_identity(point.method, point.dataset, digest, config, point.seed)
        for recorded in recorded_configs(resolved):
            earlier.setdefault(run_identity(point.method, point.dataset, digest, recorded, point.seed), identity)
        # Beside the run's own log: its work folder is keyed by the precision ``auto`` resolves to here.
        log_path = work_dir_for(request, resolve_on_this_machine(resolved), digest) / "sweep.log"
        threads = next((config["method"][key] for key in THREAD_KEYS if key in config["method"]), None)
        # The same run reached twice (e.g. a list override equal to the default) runs once.
        tasks.setdefault(identity, RunTask(
            label=point.label, method=point.method, dataset=point.dataset,
            data_dir=str(data_dir) if data_dir else None, sets=point.sets, seed=point.seed, profile=point.profile,
            results_dir=str(Path(results_dir).resolve()), identity=identity, log_path=str(log_path),
            threads_asked=threads))
    stored = all_records(results_dir) if Path(results_dir).exists() else []
    done = {}
    for record in stored:
        identity = record_identity(record)
        identity = identity if identity in tasks else earlier.get(identity)
        if identity is not None:
            done.setdefault(identity, record["_path"])
    return SweepPlan(spec=spec, tasks=list(tasks.values()), done=done)


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    identity: str
    label: str
    status: str  # "finished" or "failed"
    record: str | None
    error: str | None
    log_path: str
    seconds: float


def thread_note(plan: SweepPlan, threads_per_run: int) -> list[str]:
    """Runs whose own thread setting exceeds the cores each worker gets (they would oversubscribe)."""
    return [f"note: {task.label} asks for threads={task.threads_asked} but each run gets {threads_per_run} "
            f"core(s); set threads={threads_per_run} in the sweep to avoid oversubscription"
            for task in plan.todo if task.threads_asked and task.threads_asked > threads_per_run]


def summary_lines(plan: SweepPlan, outcomes: Sequence[RunOutcome]) -> list[str]:
    finished = [o for o in outcomes if o.status == "finished"]
    failed = [o for o in outcomes if o.status == "failed"]
    skipped = len(plan.tasks) - len(plan.todo)
    lines = [f"sweep {plan.spec.name}: {len(plan.tasks)} runs: {skipped} already done, "
             f"{len(finished)} finished, {len(failed)} failed"]
    collapsed = len(plan.spec.points) - len(plan.tasks)
    if collapsed:
        lines[0] += f" ({collapsed} more entries of the file resolve to one of these runs: each ran once)"
    lines += [f"  finished  {o.label}: {o.record}" for o in finished]
    lines += [f"  FAILED    {o.label}: {o.error}\n            log: {o.log_path}" for o in failed]
    return lines
