"""Worker of tests/test_shared_artifacts.py, started there through torchrun (2 processes, gloo):
each process asks for two artifacts, one the main process computes alone and one every process
computes (with a value of its own), noting each call of ``compute`` in a file. Every process
writes what it got.

usage: python -m torch.distributed.run ... tests/shared_artifact_worker.py OUTPUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.runtime import runtime_for
from bench.shared_artifacts import shared_artifact


def write_json(value, stream) -> None:
    stream.write(json.dumps(value).encode())


def main(output_dir: str) -> None:
    output = Path(output_dir)
    runtime = runtime_for("cpu", "fp32")
    rank = runtime.process_index
    got = {}
    for mode, together in (("alone", False), ("together", True)):
        def compute(mode=mode) -> list[int]:
            (output / f"computed-{mode}-by-{rank}").write_text("")
            return [rank, 7]

        shared = shared_artifact(output / "cache" / f"{mode}.json", runtime, compute, write_json,
                                 lambda path: json.loads(path.read_text()), every_process_computes=together)
        got[mode] = {"value": shared.value, "reused": shared.reused}
    (output / f"got-{rank}.json").write_text(json.dumps(got))


if __name__ == "__main__":
    main(*sys.argv[1:])
