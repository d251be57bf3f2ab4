"""What the harness computes, as one digest per method: a check that a refactor changed nothing.

``record`` runs every registered method (or those named) on the ``demo`` dataset with the
``cpu`` profile, seed 42 and one thread, each in its own process, into a temporary results
store and a temporary cache (so nothing is resumed from an earlier run's work folder), and
writes per method a SHA-256 digest of the record's stored ranks (``ranks``: the users, their
test targets' ranks and the partition flags every per-user value derives from,
:mod:`bench.evaluation.stored_ranks`) and its mean test metrics, to a JSON file. Running it
again with the same output file adds or replaces the methods it runs, so the set can be
recorded in parts.

``compare`` reads two such files and prints, per method, ``identical`` or ``DIFFERENT`` (with
the mean metrics of both sides), and exits non-zero when any method present in both differs.

Run from the project root, before and after a change:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_fingerprint.py record --out before.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_fingerprint.py record --out after.json
    .venv/bin/python benchmarks/demo_fingerprint.py compare before.json after.json

Two records of the same code differ only when a method is not deterministic on the CPU; run
``record`` twice on one commit to tell that apart from a change.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATASET = "demo"
PROFILE = "cpu"
SEED = 42
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def registered_methods() -> list[str]:
    from bench.registry import methods

    return sorted(methods().names())


def thread_setting(method: str) -> list[str]:
    """``--set threads=1`` for a method that has the option (the engine's methods); the others
    run on one thread through the environment alone."""
    from bench.registry import methods

    fields = {field.name for field in dataclasses.fields(methods().get(method).config_class)}
    return ["--set", "threads=1"] if "threads" in fields else []


def ranks_digest(record_path: Path) -> dict[str, Any]:
    stored = json.loads(record_path.read_text())
    canonical = json.dumps(stored["ranks"], sort_keys=True, separators=(",", ":"))
    return {"ranks_sha256": hashlib.sha256(canonical.encode()).hexdigest(), "metrics": stored["metrics"]}


def run_method(method: str, results_dir: Path, cache_dir: Path) -> dict[str, Any]:
    environment = {**os.environ, "GENREC_BENCH_CACHE": str(cache_dir),
                   **{variable: "1" for variable in THREAD_VARIABLES}}
    command = [sys.executable, "-m", "bench.cli", "run", "--method", method, "--dataset", DATASET,
               "--profile", PROFILE, "--seed", str(SEED), "--quiet", "--results-dir", str(results_dir),
               *thread_setting(method)]
    started = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    seconds = round(time.perf_counter() - started, 1)
    if finished.returncode != 0:
        return {"error": (finished.stderr or finished.stdout).strip().splitlines()[-1:], "seconds": seconds}
    record_path = Path(finished.stdout.strip().splitlines()[-1])
    return {**ranks_digest(record_path), "seconds": seconds}


def record(out: Path, names: list[str]) -> int:
    existing = json.loads(out.read_text()) if out.exists() else {}
    failures = 0
    with tempfile.TemporaryDirectory(prefix="demo-fingerprint-") as scratch:
        for method in names:
            result = run_method(method, Path(scratch) / "results", Path(scratch) / "cache")
            existing[method] = result
            out.write_text(json.dumps(existing, indent=1, sort_keys=True) + "\n")
            failures += "error" in result
            print(f"{method}: {result.get('ranks_sha256', result.get('error'))} ({result['seconds']} s)", flush=True)
    return 1 if failures else 0


def compare(before: Path, after: Path) -> int:
    old, new = json.loads(before.read_text()), json.loads(after.read_text())
    different = 0
    for method in sorted(set(old) | set(new)):
        if method not in old or method not in new:
            print(f"{method}: only in {before if method in old else after}")
            continue
        a, b = old[method].get("ranks_sha256"), new[method].get("ranks_sha256")
        if a is None or b is None:
            print(f"{method}: no record ({old[method].get('error') or new[method].get('error')})")
            different += 1
        elif a == b:
            print(f"{method}: identical")
        else:
            print(f"{method}: DIFFERENT  {old[method]['metrics']}  vs  {new[method]['metrics']}")
            different += 1
    return 1 if different else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record_parser = commands.add_parser("record", help="run the methods and write their digests")
    record_parser.add_argument("--out", type=Path, required=True, help="JSON file (methods already in it are kept)")
    record_parser.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    compare_parser = commands.add_parser("compare", help="per method: identical or not")
    compare_parser.add_argument("before", type=Path)
    compare_parser.add_argument("after", type=Path)
    arguments = parser.parse_args()
    if arguments.command == "record":
        sys.exit(record(arguments.out, arguments.methods or registered_methods()))
    sys.exit(compare(arguments.before, arguments.after))


if __name__ == "__main__":
    main()
