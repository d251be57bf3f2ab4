"""Worker of tests/test_distributed.py, started there through torchrun: evaluates a saved,
trained method on the tiny fixture with this process's share of the users (also with warm and
cold targets ranked within their group). Every process
writes which users it ranked; the main process also writes the gathered result.

usage: python -m torch.distributed.run ... tests/distributed_worker.py METHOD_FILE OUTPUT_DIR
       N_USERS N_ITEMS EVAL_BATCH_SIZE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from bench.config import EvalConfig
from bench.data.split import leave_one_out
from bench.runtime import runtime_for
from bench.evaluation.protocol import evaluate
from tests.conftest import tiny_dataset, with_cold_targets


def main(method_file: str, output_dir: str, n_users: str, n_items: str, batch_size: str) -> None:
    torch.set_num_threads(1)
    runtime = runtime_for("cpu", "fp32")
    method = torch.load(method_file, weights_only=False)
    split = leave_one_out(tiny_dataset(n_users=int(n_users), n_items=int(n_items)))
    ranked: list[int] = []
    rank = method.rank

    def counting_rank(users, histories, k, candidates=None):
        if candidates is None:
            ranked.extend(np.asarray(users).tolist())
        return rank(users, histories, k, candidates=candidates)

    method.rank = counting_rank
    config = EvalConfig(batch_size=int(batch_size))
    result = evaluate(method, split, "test", config, method.context)
    output = Path(output_dir)
    (output / f"ranked-{runtime.process_index}.json").write_text(
        json.dumps({"users": ranked, "processes": runtime.num_processes}))
    # Warm and cold targets ranked within their group: the method ranks again per group, per process.
    grouped = evaluate(method, with_cold_targets(split), "test", config, method.context, in_group=True)
    if runtime.is_main_process:
        np.savez(output / "result.npz", ranks=result.ranks, **result.per_user,
                 **{f"warm-{name}": values for name, values in grouped.warm_in_group.per_user.items()},
                 **{f"cold-{name}": values for name, values in grouped.cold_in_group.per_user.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
