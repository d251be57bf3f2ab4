"""A results store at scale (issue 28): how long `bench table standard` and `bench report` take
over a synthetic store of many records.

The store holds ``--records`` records of Table 4's methods on its five datasets, each
configuration under several seeds and several option values (the shape a grid of sweeps leaves),
with ``--users`` test users each, stored as ranks like every new record. The commands are timed as
a user starts them (a fresh process each, imports included). Run from the project root:

    .venv/bin/python benchmarks/store_scale.py --records 5000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.evaluation.metrics import user_metrics
from bench.evaluation.stored_ranks import FORMAT, encode_integers

METHODS = {"pop": {}, "gru4rec": {"loss_type": "CE"}, "sasrec": {"loss_type": "CE"}, "caser": {"loss_type": "CE"},
           "bert4rec": {"loss_type": "CE"}, "p5-sid": {}, "p5-cid": {}, "tiger": {"semantic_ids": "rqvae"},
           "idgenrec": {"training": "alternate", "ids": "user+item"}}
DATASETS = ("sports", "beauty", "toys", "yelp", "demo")
CUTOFFS = (5, 10)


def synthetic_record(number: int, method: str, dataset: str, variant: int, seed: int, users: int,
                     rng: np.random.Generator) -> dict:
    ranks = rng.geometric(0.02, users) - 1  # most targets far down, some near the top
    per_user = user_metrics(ranks, np.arange(users), users, CUTOFFS, True)
    config = {**METHODS[method], "variant": variant}
    return {"schema": 1, "run_id": f"20260101T{number:06d}-{method}-{number:06x}", "method": method,
            "dataset": dataset, "dataset_summary": {"users": users},
            "split": {"protocol": "leave-one-out", "digest": f"synthetic-{dataset}", "phase": "test"},
            "profile": "cpu", "config": {"profile": "cpu", "method": config,
                                         "eval": {"mask_history": False, "batch_size": 256, "cutoffs": list(CUTOFFS)}},
            "seed": seed, "started_at": f"2026-01-01T00:00:00+00:00", "wall_time_seconds": {"fit": 1.0, "evaluate": 0.1},
            "metrics": {name: round(float(values.mean()), 6) for name, values in per_user.items()},
            "method_metadata": {}, "inference": {"seconds": 1.0, "users": users},
            "ranks": {"format": FORMAT, "cutoffs": list(CUTOFFS), "several_targets": False,
                      "user_steps": encode_integers(np.diff(np.arange(users), prepend=0)),
                      "targets_per_user": encode_integers(np.ones(users, dtype=np.int64)),
                      "all": encode_integers(ranks)}}


def build_store(results_dir: Path, records: int, users: int = 100, seeds: int = 5) -> None:
    """``records`` records: every (method, dataset) pair in turn, each under ``seeds`` seeds of a
    growing number of option variants."""
    rng = np.random.default_rng(0)
    pairs = [(method, dataset) for method in METHODS for dataset in DATASETS]
    for number in range(records):
        method, dataset = pairs[number % len(pairs)]
        round_number = number // len(pairs)
        record = synthetic_record(number, method, dataset, variant=round_number // seeds, seed=round_number % seeds,
                                  users=users, rng=rng)
        path = results_dir / dataset / method / f"{record['run_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))


def timed(arguments: list[str]) -> float:
    clock = time.perf_counter()
    finished = subprocess.run([sys.executable, "-m", "bench.cli", *arguments], capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"bench {' '.join(arguments)} failed: {finished.stderr[-2000:]}")
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--users", type=int, default=100)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "results"
        build_store(results, options.records, options.users)
        print(f"store: {options.records} records of {options.users} users")
        for arguments in (["table", "standard", "--results-dir", str(results)],
                          ["report", "--results-dir", str(results), "--out", str(Path(folder) / "report")]):
            print(f"bench {arguments[0]} {arguments[1] if arguments[0] == 'table' else ''}: {timed(arguments):.1f} s")
        print(f"again, with the store's index built: bench table standard: "
              f"{timed(['table', 'standard', '--results-dir', str(results)]):.1f} s")


if __name__ == "__main__":
    main()
