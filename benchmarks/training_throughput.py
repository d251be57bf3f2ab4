"""Training throughput of the engine's loop, the current path against the new one (issue 9 part 2).

On real data (P5-SID prompts of the shared chronological Toys data, a fixed seeded subset of
the training examples), one epoch over the same examples, from the same initial weights:

- **current**: the loop before the throughput work, still reachable through its switches:
  batches drawn at random (``length_bucketing=false``), each batch tokenized when it is built
  (``pretokenize=False``), fp32;
- **new**: length-bucketed batches, prompts tokenized once per epoch, cheap dropout masks
  (``torch.nn.Dropout`` modules and the T5's attention weights) and the T5 feed-forward
  block without its fp32 round trip (:mod:`bench.engine.dropout`), ``precision=bf16``;
- **new fp32**: the same without bf16 (what bf16 adds, and the loss check below).

For each: examples/s, useful GFLOP/s (matrix-multiply FLOPs of forward + backward on the
real, unpadded tokens, counted from the T5's shapes: padding is not useful work) and their
share of a torch matmul peak measured in the same run, the loss after the epoch on held-out
examples (fp32, no dropout) against the spread of the current path over seeds (the noise).
Both for the cpu-profile T5 (d_model 128, 2+2 layers) and a t5-small-sized T5 with random
weights (d_model 512, d_ff 2048, 6+6 layers, 8 heads). With ``--processes 2`` the new path
also runs in 2 processes (torchrun, gloo) and the 2-process / 1-process ratio is printed;
``--profile-top N`` adds a torch profile of rank 0 there (its N costliest operations by self
CPU time, the gloo all-reduce among them), to show where the time of a low ratio goes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training_throughput.py --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon-toys-p5-order"
CPU_SIZE = {"d_model": 128, "d_ff": 512, "num_layers": 2, "num_heads": 4, "d_kv": 32}
T5_SMALL_SIZE = {"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_heads": 8, "d_kv": 64}


@dataclasses.dataclass(frozen=True)
class LoopPath:
    name: str
    bucketing: bool
    pretokenize: bool
    precision: str
    cheap_dropout_masks: bool


CURRENT = LoopPath("current", bucketing=False, pretokenize=False, precision="fp32", cheap_dropout_masks=False)
NEW = LoopPath("new", bucketing=True, pretokenize=True, precision="bf16", cheap_dropout_masks=True)
NEW_FP32 = LoopPath("new fp32", bucketing=True, pretokenize=True, precision="fp32", cheap_dropout_masks=True)


def setup(data_dir: Path, cache: Path, seed: int):
    """Toys (chronological), its leave-one-out split, SID IDs, the cpu tokenizer, the examples."""
    os.environ.setdefault("GENREC_BENCH_CACHE", str(cache))
    from bench.data.prepare import prepare_dataset
    from bench.data.split import leave_one_out
    from bench.engine.batching import SequentialExamples
    from bench.engine.prompts import template_words
    from bench.engine.tokenizer import build_tokenizer
    from methods.p5_indexing import sequential_ids

    dataset = prepare_dataset("toys", data_dir)
    split = leave_one_out(dataset)
    identifiers = sequential_ids(split.train, dataset.n_items, seed=seed)
    corpus = list(dataset.item_text) + identifiers + template_words(False)
    tokenizer = build_tokenizer("cpu", "t5-small", corpus, cache / "throughput-tokenizer", 8000, seed)
    examples = SequentialExamples(split.train, identifiers, 20, seed)
    return tokenizer, examples


def t5_flops(source_lengths: np.ndarray, target_lengths: np.ndarray, size: dict[str, int], vocab: int) -> float:
    """Matrix-multiply FLOPs of one training step (forward x 3) over real tokens only."""
    d, d_ff, layers, inner = size["d_model"], size["d_ff"], size["num_layers"], size["num_heads"] * size["d_kv"]
    src, tgt = source_lengths.astype(np.float64), target_lengths.astype(np.float64)
    encoder = layers * (src * (4 * d * inner + 2 * d * d_ff) + 2 * src * src * inner)
    decoder = layers * (tgt * (4 * d * inner + 2 * d * inner + 2 * d * d_ff)  # self q,k,v,o; cross q,o; FF
                        + src * 2 * d * inner                                  # cross k,v of the encoder output
                        + 2 * tgt * tgt * inner + 2 * tgt * src * inner)       # self and cross scores
    head = tgt * d * vocab
    return float(3 * 2 * (encoder + decoder + head).sum())


def matmul_peak(dtype_name: str, size: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` square matmuls (the peak a training step could reach)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        clock = time.process_time()  # CPU time, as the training runs are measured
        for _ in range(4):
            torch.mm(a, b)
        best = min(best, (time.process_time() - clock) / 4)
    return 2 * size ** 3 / best / 1e9


def held_out_loss(model, tokenizer, pairs, batch_size: int = 64) -> float:
    """Token-mean cross-entropy on ``pairs`` in fp32 eval mode (no dropout)."""
    import torch

    from bench.engine.batching import Seq2SeqTask

    task = Seq2SeqTask(tokenizer, lambda epoch: pairs)
    encoded = task.examples_for_epoch(0)
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            batch = task.collate(encoded[start:start + batch_size])
            count = int((batch["labels"] != -100).sum())
            total += float(model(**batch).loss) * count
            tokens += count
    return total / tokens


def train_once(path: LoopPath, size: dict[str, int], tokenizer, train_pairs, eval_pairs, seed: int,
               threads: int, work: Path, batch_size: int = 32) -> dict[str, Any]:
    import torch

    from bench.engine.model import T5EngineConfig, build_model
    from bench.engine.training import train_seq2seq
    from bench.method import RunContext

    torch.set_num_threads(threads)
    config = T5EngineConfig(**size, epochs=1, batch_size=batch_size, eval_every=0, device="cpu",
                            precision=path.precision,
                            length_bucketing=path.bucketing, threads=threads)
    model = build_model(config, "cpu", tokenizer, seed)
    context = RunContext(work_dir=work, seed=seed, profile="cpu", show_progress=False)
    checkpoints = Path(tempfile.mkdtemp(dir=work))
    wall, cpu = time.perf_counter(), time.process_time()
    report = train_seq2seq(model, tokenizer, lambda epoch: train_pairs, config, checkpoints, context,
                           pretokenize=path.pretokenize, cheap_dropout_masks=path.cheap_dropout_masks)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # CPU seconds of this process (all its threads): on a shared machine, wall time also
    # counts the time other jobs held the core.
    return {"seconds": cpu, "wall_seconds": wall, "examples_per_second": len(train_pairs) / cpu,
            "examples_per_wall_second": len(train_pairs) / wall,
            "train_loss": report.final_epoch_loss,
            "held_out_loss": held_out_loss(model, tokenizer, eval_pairs) if eval_pairs else None}


def measure(size_name: str, size: dict[str, int], tokenizer, train_pairs, eval_pairs, seeds: list[int],
            threads: int, work: Path, peaks: dict[str, float], print_row,
            batch_size: int = 32) -> dict[str, dict[str, Any]]:
    lengths = tokenizer([s for s, _ in train_pairs]).input_ids, tokenizer([t for _, t in train_pairs]).input_ids
    flops = t5_flops(np.array([len(x) for x in lengths[0]]), np.array([len(x) for x in lengths[1]]), size,
                     len(tokenizer))
    results = {}
    for path in (CURRENT, NEW, NEW_FP32):
        # Untimed: the process's first steps of a path pay one-time costs (allocator, lazy
        # imports, the runtime), which would otherwise fall on whichever path runs first.
        train_once(path, size, tokenizer, train_pairs[:64], [], 0, threads, work, batch_size)
    for path in (CURRENT, NEW, NEW_FP32):
        runs = [train_once(path, size, tokenizer, train_pairs, eval_pairs, seed, threads, work, batch_size)
                for seed in (seeds if path is not NEW_FP32 else seeds[:1])]
        best = max(runs, key=lambda run: run["examples_per_second"])
        gflops = flops / best["seconds"] / 1e9
        results[path.name] = {
            "examples_per_second": round(best["examples_per_second"], 1),
            "seconds": [round(run["seconds"], 2) for run in runs],
            "examples_per_wall_second": round(best["examples_per_wall_second"], 1),
            "useful_gflops": round(gflops, 2),
            "peak_share": round(gflops / peaks[path.precision], 3),
            "held_out_loss": [None if run["held_out_loss"] is None else round(run["held_out_loss"], 4)
                              for run in runs],
            "train_loss": [round(run["train_loss"], 4) for run in runs],
        }
        print_row(size_name, path.name, results[path.name])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--examples", type=int, default=3200, help="training examples (cpu-profile model)")
    parser.add_argument("--large-examples", type=int, default=320, help="training examples (t5-small size)")
    parser.add_argument("--held-out", type=int, default=1024, help="held-out examples for the loss check")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per path (the loss noise), cpu profile")
    parser.add_argument("--processes", type=int, default=1, help="also run the new path in this many processes")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "training-throughput")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="training examples per step over all processes (cpu profile; the t5-small size keeps 32)")
    parser.add_argument("--profile-top", type=int, default=0,
                        help="with --processes: profile rank 0's training (torch.profiler, CPU) and print its "
                             "this many costliest operations by self CPU time, all-reduce included")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(args.threads)
    tokenizer, examples = setup(args.data_dir, args.work_dir / "cache", seed=42)
    pairs = examples(0)
    # A fixed subset: the same examples for every path, seed and process count.
    chosen = np.random.default_rng(2026).permutation(len(pairs))
    train_pairs = [pairs[i] for i in chosen[:args.examples]]
    eval_pairs = [pairs[i] for i in chosen[args.examples:args.examples + args.held_out]]
    if args.worker:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) if args.profile_top else contextlib.nullcontext() \
                as profiler:
            run = train_once(NEW, CPU_SIZE, tokenizer, train_pairs, [], 0, args.threads, args.work_dir,
                             args.batch_size)
        if int(os.environ.get("RANK", "0")) == 0:
            print("WORKER " + json.dumps(run), flush=True)
            if args.profile_top:
                print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_top),
                      flush=True)
        return

    peaks = {name: matmul_peak(name) for name in ("fp32", "bf16")}
    print(f"matmul_peak_gflops: fp32 {peaks['fp32']:.1f}, bf16 {peaks['bf16']:.1f} "
          f"({args.threads} thread(s), 1024x1024)")
    print(f"examples: {len(train_pairs)} training (cpu profile), {args.large_examples} (t5-small size), "
          f"{len(eval_pairs)} held out, of {len(pairs)}")

    def print_row(size_name: str, path_name: str, row: dict[str, Any]) -> None:
        print(f"{size_name:8s} {path_name:8s} {row['examples_per_second']:7.1f} ex/CPU-s "
              f"({row['examples_per_wall_second']:6.1f} ex/wall-s)  "
              f"{row['useful_gflops']:7.2f} GFLOP/s  {100 * row['peak_share']:5.1f}% of peak  "
              f"held-out loss {row['held_out_loss']}  train loss {row['train_loss']}  s {row['seconds']}",
              flush=True)

    seeds = list(range(args.seeds))
    small = measure("cpu", CPU_SIZE, tokenizer, train_pairs, eval_pairs, seeds, args.threads, args.work_dir,
                    peaks, print_row, args.batch_size)
    speedup = small["new"]["examples_per_second"] / small["current"]["examples_per_second"]
    print(f"training_speedup: {speedup:.2f}")
    print(f"bf16_speedup_over_new_fp32: "
          f"{small['new']['examples_per_second'] / small['new fp32']['examples_per_second']:.2f}")
    if not args.skip_large:
        large = measure("t5-small", T5_SMALL_SIZE, tokenizer, train_pairs[:args.large_examples], [], [0],
                        args.threads, args.work_dir, peaks, print_row)
        print(f"training_speedup_t5_small_size: "
              f"{large['new']['examples_per_second'] / large['current']['examples_per_second']:.2f}")
    if args.processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={args.processes}", __file__, "--worker", "--threads", str(args.threads),
                   "--examples", str(args.examples), "--data-dir", str(args.data_dir),
                   "--work-dir", str(args.work_dir), "--profile-top", str(args.profile_top),
                   "--batch-size", str(args.batch_size)]
        output = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        lines = [line for line in output.stdout.splitlines() if line.startswith("WORKER ")]
        if output.returncode != 0 or not lines:
            print(f"processes_{args.processes}: failed ({output.stderr.strip().splitlines()[-1:]})")
        else:
            run = json.loads(lines[0][len("WORKER "):])
            ratio = run["examples_per_second"] / small["new"]["examples_per_second"]
            print(f"processes_{args.processes}: {run['examples_per_second']:.1f} ex/s, "
                  f"ratio_to_1_process: {ratio:.2f}" + (" (profiled: the profiler's overhead is in it)"
                                                        if args.profile_top else ""))
            if args.profile_top:
                print(f"profile of rank 0 of {args.processes}, by self CPU time:")
                print(output.stdout.split(lines[0], 1)[1].strip())


if __name__ == "__main__":
    main()
