"""Worker of tests/test_distributed.py, started there through torchrun: each process asks for
the same items' text embeddings with a stand-in encoder that notes which process loaded it.
Every process writes the embeddings it got.

usage: python -m torch.distributed.run ... tests/embedding_worker.py OUTPUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.engine import text_embeddings
from bench.runtime import runtime_for
from bench.method import RunContext
from tests.engine.test_text_embeddings import TEXTS, CountingEncoder


def main(output_dir: str) -> None:
    output = Path(output_dir)
    runtime = runtime_for("cpu", "fp32")
    rank = runtime.process_index

    def load_encoder(*_: object, **__: object) -> CountingEncoder:
        (output / f"encoder-loaded-by-{rank}").write_text("")
        return CountingEncoder()

    text_embeddings.load_encoder = load_encoder
    context = RunContext(output / "work", seed=0, profile="cpu", show_progress=False)
    embeddings = text_embeddings.item_text_embeddings(TEXTS, "cpu", None, output / "emb", context, batch_size=2)
    np.save(output / f"embeddings-{rank}.npy", embeddings)


if __name__ == "__main__":
    main(*sys.argv[1:])
