"""Time to quality: the CPU time a training path needs to reach a validation score.

For each method, two paths from the same seed on the same data, both validated after every
epoch on the same fixed sample of validation users:

- **today**: the settings of the method's committed chronological-Toys record before the
  time-to-quality work, its linear schedule spanning that record's epoch cap
  (``schedule_epochs``), trained for the first E epochs of it; its validation NDCG@10 after
  epoch E is the target T (E = 2 for P5-CID and IDGenRec, 3 for SETRec, 4 for TIGER);
- **new**: the current cpu-profile defaults plus the overrides below, trained until its first
  validation at or above T (``target_validation``), for at most ``NEW_EPOCHS`` (or
  ``--new-epochs``) epochs (a schedule that does not depend on the epoch cap, so the cap only
  bounds the benchmark's cost).

Each path's cost to T is the CPU seconds of all its processes, training and validation, up to
the first validation at or above T: ``cpu_seconds`` of the record's training curve. IDGenRec
runs one recommender phase (``rounds=1``, ``training=rec-only``) from its shared warm start,
which both paths reuse and which is not counted. Prints ``time_to_quality_speedup[METHOD]: X``
(today's CPU seconds over the new path's; a path that never reaches T prints ``not reached``)
and ``time_to_quality_speedup_geomean: X`` over the methods that reached it.

Runs go through ``bench run`` (one process each), so finished runs are reused and a killed
benchmark resumes: point ``GENREC_BENCH_CACHE`` at a lasting folder. A path whose record is
already in ``--results-dir`` (same method, dataset, data folder and settings) is read from it,
not run again, so trying one more lever does not rank the test users of the other path again.

    .venv/bin/python benchmarks/time_to_quality.py --data-dir ../shared/data/amazon-toys-p5-order
    .venv/bin/python benchmarks/time_to_quality.py --methods tiger --today-precision fp32
    .venv/bin/python benchmarks/time_to_quality.py --methods p5-cid --new-set learning_rate=3e-3

``--today-precision``: the committed P5-CID and SETRec records ran bf16 on a CPU with AVX-512
BF16; on a CPU without it bf16 is emulated (benchmarks/precision_matmul.py), and the today path
at bf16 would measure mostly that. Give ``fp32`` there to measure the other levers; the
precision lever is measured by precision_matmul.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness's modules, whichever folder runs the script
COMMON = {"threads": "1", "validation_users": "5000", "eval_every": "1", "patience": "0"}
# The settings of each method's committed chronological-Toys record (README results table),
# its epoch cap among them: the linear schedule decays over that many epochs, so E epochs of it
# are where that record stood after its E-th epoch, not a short run annealed to zero.
TODAY: dict[str, dict[str, str]] = {
    "p5-cid": {"precision": "bf16", "lr_schedule": "linear", "schedule_epochs": "20", "output_head": "vocabulary"},
    "idgenrec": {"precision": "fp32", "lr_schedule": "linear", "schedule_epochs": "24", "rounds": "1",
                 "training": "rec-only", "output_head": "vocabulary"},
    "setrec": {"precision": "bf16", "lr_schedule": "linear", "schedule_epochs": "20", "cf_epochs": "20",
               "warmup_steps": "0", "max_history": "50", "dropout_rate": "0.1"},
    "tiger": {"precision": "fp32", "lr_schedule": "linear", "schedule_epochs": "8", "semantic_ids": "rqvae",
              "output_head": "vocabulary"},
}
TARGET_EPOCH = {"p5-cid": 2, "idgenrec": 2, "setrec": 3, "tiger": 4}
# The new path's epoch cap: it only bounds the benchmark's cost (the new schedules do not depend
# on it), and a path that trains on one example per user needs more, cheaper epochs.
NEW_EPOCHS = {"p5-cid": 4, "idgenrec": 8, "setrec": 3, "tiger": 8}
# The new path stops at its first validation at or above T. Records are matched without it:
# up to that validation, a run that went on trained the same model (the new paths' schedules do
# not depend on the epoch cap), so it reached T at the same epoch and CPU time.
STOP_OPTION = "target_validation"
# The new path: the cpu profile's defaults (precision=auto among them) and these overrides.
NEW: dict[str, dict[str, str]] = {
    "p5-cid": {"lr_schedule": "constant", "warmup_steps": "500", "last_position_only": "true", "max_history": "10"},
    "idgenrec": {"lr_schedule": "constant", "warmup_steps": "500", "rounds": "1", "training": "rec-only",
                 "output_head": "id_tokens", "last_position_only": "true", "max_history": "10"},
    # SETRec's cpu-profile defaults are its new path (no dropout, a constant rate after 100
    # warm-up steps, 20 history items); the CF tokenizer is the today path's.
    "setrec": {"cf_epochs": "20"},
    "tiger": {"semantic_ids": "rkmeans", "lr_schedule": "inverse_sqrt", "warmup_steps": "1000",
              "learning_rate": "2e-3", "output_head": "id_tokens"},
}


def _options(method: str, sets: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The method's options as ``bench run --set ...`` resolves them on the cpu profile on this
    machine (as its record holds them: ``precision=auto`` made concrete), and its options' own
    defaults (what a record that omits one ran)."""
    from bench import config as config_module
    from bench.identity import PLACEMENT_OPTIONS, method_class
    from bench.runner import resolve_on_this_machine

    found = method_class(method)
    resolved = resolve_on_this_machine(config_module.resolve(method, found.config_class, found.profiles, "cpu",
                                                             {}, sets))
    options = dataclasses.asdict(resolved.method)
    wanted = json.loads(json.dumps({key: value for key, value in options.items() if key not in PLACEMENT_OPTIONS}))
    return wanted, {field.name: field.default for field in dataclasses.fields(found.config_class)}


def earlier_record(method: str, dataset: str, data_dir: str, sets: dict[str, str], results: Path) -> Path | None:
    """The newest record in ``results`` of this path: same method, dataset, data folder and
    resolved options."""
    wanted, defaults = _options(method, sets)
    wanted.pop(STOP_OPTION)
    for path in sorted((results / dataset / method).glob("*.json"), reverse=True):
        record = json.loads(path.read_text())
        recorded = record["config"]["method"]
        ran = json.loads(json.dumps({key: recorded.get(key, defaults[key]) for key in wanted}))
        if record.get("dataset_source", {}).get("source", "") == data_dir and ran == wanted:
            return path
    return None


def run(method: str, dataset: str, data_dir: str, sets: dict[str, str], results: Path) -> dict[str, Any]:
    found = earlier_record(method, dataset, data_dir, sets, results)
    if found is not None:
        print(f"$ (reusing {found.name}: the same path's record in {results})", flush=True)
        return json.loads(found.read_text())
    command = [str(ROOT / ".venv" / "bin" / "bench"), "run", "--method", method, "--dataset", dataset,
               "--results-dir", str(results), "--quiet"] + (["--data-dir", data_dir] if data_dir else [])
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    print("$ " + " ".join(command[1:]), flush=True)
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"{method}: bench run failed: {finished.stderr.strip().splitlines()[-1:]}")
    return json.loads(Path(finished.stdout.strip().splitlines()[-1]).read_text())


def curve(record: dict[str, Any]) -> list[tuple[float, float]]:
    """(validation NDCG@10, cumulative CPU seconds) per validated epoch."""
    return [(entry["validation"]["NDCG@10"], entry["cpu_seconds"]) for entry in record["training_curve"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="toys")
    parser.add_argument("--data-dir", default="../shared/data/amazon-toys-p5-order", help="'' for none (demo)")
    parser.add_argument("--methods", default="p5-cid,idgenrec,setrec,tiger")
    parser.add_argument("--new-epochs", type=int, default=0, help="cap of the new path (0: NEW_EPOCHS)")
    parser.add_argument("--today-precision", default="", help="override today's precision (e.g. fp32)")
    parser.add_argument("--results-dir", default="", help="where the runs' records go (default: a temporary folder)")
    parser.add_argument("--new-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a lever to try: overrides the new path's settings (repeatable)")
    arguments = parser.parse_args()
    try:
        new_overrides = dict(item.split("=", 1) for item in arguments.new_set)
    except ValueError:
        raise SystemExit(f"--new-set: expected KEY=VALUE, got {arguments.new_set}") from None
    results = Path(arguments.results_dir or tempfile.mkdtemp(prefix="time-to-quality-"))
    speedups = {}
    for method in arguments.methods.split(","):
        if method not in TODAY:
            raise SystemExit(f"--methods: unknown method '{method}'; known: {', '.join(TODAY)}")
        epochs = TARGET_EPOCH[method]
        today_sets = {**COMMON, **TODAY[method], "epochs": str(epochs)}
        if arguments.today_precision:
            today_sets["precision"] = arguments.today_precision
        today = curve(run(method, arguments.dataset, arguments.data_dir, today_sets, results))
        target, today_cost = today[epochs - 1]
        new_sets = {**COMMON, **NEW[method], **new_overrides, "epochs": str(arguments.new_epochs or NEW_EPOCHS[method]),
                    STOP_OPTION: f"{target}"}
        new = curve(run(method, arguments.dataset, arguments.data_dir, new_sets, results))
        reached = [(epoch, cost) for epoch, (score, cost) in enumerate(new, 1) if score >= target]
        print(f"{method}: target NDCG@10 {target:.4f} (today, epoch {epochs}, {today_cost:.0f} CPU s); new path "
              f"curve " + ", ".join(f"{score:.4f}@{cost:.0f}s" for score, cost in new))
        if reached:
            speedups[method] = today_cost / reached[0][1]
            print(f"time_to_quality_speedup[{method}]: {speedups[method]:.2f} (new path reached it at epoch "
                  f"{reached[0][0]}, {reached[0][1]:.0f} CPU s)", flush=True)
        else:
            print(f"time_to_quality_speedup[{method}]: not reached in {len(new)} epochs", flush=True)
    if speedups:
        geomean = math.exp(sum(map(math.log, speedups.values())) / len(speedups))
        print(f"time_to_quality_speedup_geomean: {geomean:.2f} (over {', '.join(speedups)})")


if __name__ == "__main__":
    sys.exit(main())
