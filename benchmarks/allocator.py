"""The run's allocator setting (bench/allocator.py): one training epoch with glibc's default
malloc against the held heap, the same run otherwise.

For each method, ``bench run --set epochs=1`` twice from the same seed, each in its own process
with a fresh cache: once with ``GENREC_BENCH_ALLOCATOR=system`` and once with the default
(``hold``). Prints, per method and choice, the training seconds the record gives, the process's
user and kernel CPU seconds and its peak resident size; then
``allocator_cpu_speedup[METHOD]: X`` (system's CPU seconds, user and kernel, over hold's:
CPU time, not wall time, so another job on the machine does not tilt it) and whether
the two records rank every test user the same (``same_ranks[METHOD]: True``).

    .venv/bin/python benchmarks/allocator.py --data-dir ../shared/data/amazon-toys-p5-order
    .venv/bin/python benchmarks/allocator.py --methods sasrec gru4rec --dataset demo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHOICES = ("system", "hold")


def one_epoch(method: str, dataset: str, data_dir: str | None, choice: str, folder: Path) -> dict:
    """Train ``method`` for one epoch with the allocator ``choice``; its record and costs."""
    command = [sys.executable, "-m", "bench.cli", "run", "--method", method, "--dataset", dataset,
               "--set", "epochs=1", "--set", "threads=1", "--quiet", "--results-dir", str(folder / "results")]
    if data_dir:
        command += ["--data-dir", data_dir]
    environment = {**os.environ, "GENREC_BENCH_ALLOCATOR": choice, "GENREC_BENCH_CACHE": str(folder / "cache"),
                   "OMP_NUM_THREADS": "1"}
    environment.pop("GLIBC_TUNABLES", None)
    process = subprocess.Popen(command, env=environment, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # this run's own CPU times and peak resident size
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} exited with {process.returncode}")
    record_path = next((folder / "results").rglob("*.json"))
    record = json.loads(record_path.read_text())
    return {"record": record, "training_seconds": record["method_metadata"]["training_seconds"],
            "user_seconds": usage.ru_utime, "kernel_seconds": usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["sasrec"])
    parser.add_argument("--dataset", default="toys")
    parser.add_argument("--data-dir", default=None)
    options = parser.parse_args()
    for method in options.methods:
        runs = {}
        for choice in CHOICES:
            with tempfile.TemporaryDirectory(prefix="allocator-") as folder:
                runs[choice] = one_epoch(method, options.dataset, options.data_dir, choice, Path(folder))
            run = runs[choice]
            print(f"{method} {choice}: training {run['training_seconds']:.1f} s, CPU user {run['user_seconds']:.1f} s, "
                  f"kernel {run['kernel_seconds']:.1f} s, peak resident {run['peak_rss_mib']:.0f} MiB "
                  f"({run['record']['hardware']['allocator']})", flush=True)
        cpu = {choice: run["user_seconds"] + run["kernel_seconds"] for choice, run in runs.items()}
        print(f"allocator_cpu_speedup[{method}]: {cpu['system'] / cpu['hold']:.2f}")
        print(f"same_ranks[{method}]: {runs['system']['record']['ranks'] == runs['hold']['record']['ranks']}")


if __name__ == "__main__":
    main()
