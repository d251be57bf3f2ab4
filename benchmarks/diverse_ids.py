"""Time diverse ID generation (IDGenRec Alg. 1) over the 11,924 Amazon Toys items (issue 4 item 8).

Builds what the IDGenRec method builds in the ``cpu`` profile: the SentencePiece tokenizer
trained on the item text and prompt wording, the small T5 ID generator over it, warm-started
for ``--warm-start-epochs`` epochs on the title-words copy task (0: untrained). Then:

  (a) Algorithm 1 over the whole catalogue, ``--batch-size`` items per decoding call;
  (b) on a random sample of ``--sample`` items: Algorithm 1 batched and one item at a time
      (batch size 1), timed, and whether the two give the same IDs;
  (c) an estimate of (a) one item at a time: every item that (a) decoded at a level, times
      the measured cost of decoding one item alone in that level's length range.

Run (one thread, the CPU is shared):

    .venv/bin/python benchmarks/diverse_ids.py --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon-toys"


class TimedGenerate:
    """Wraps a generate_fn and records (min_length, batch size, seconds) per call."""

    def __init__(self, generate_fn) -> None:
        self.generate_fn, self.calls = generate_fn, []

    def __call__(self, texts, diversity_penalty, min_length, max_length):
        clock = time.perf_counter()
        output = self.generate_fn(texts, diversity_penalty, min_length, max_length)
        self.calls.append((min_length, len(texts), time.perf_counter() - clock))
        return output


def timed_run(generator, texts, batch_size: int, progress=None):
    from methods.idgenrec.diverse_ids import generate_unique_ids

    config = generator.config
    timed = TimedGenerate(generator.candidates)
    clock = time.perf_counter()
    result = generate_unique_ids(timed, texts, batch_size,
                                 (tuple(config.id_length_range), tuple(config.id_longer_length_range)),
                                 config.id_max_diversity_penalty, progress)
    return result, time.perf_counter() - clock, timed.calls


def pending_per_level(result) -> list[int]:
    """Items decoded at each level of the schedule (those without an ID when it began)."""
    pending, counts = result.stats.n_items, []
    for level in result.schedule:
        if pending == 0:
            break
        counts.append(pending)
        pending -= result.stats.resolved_per_level.get(level.label(), 0)
    return counts


def main() -> None:
    import torch

    from bench.data.openp5 import read_openp5_folder
    from bench.engine.prompts import template_words
    from bench.engine.tokenizer import build_tokenizer
    from bench.method import RunContext
    from bench.progress import progress_bar
    from methods.idgenrec.generator import IDGeneratorConfig, build_id_generator, warm_start, warm_start_target

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warm-start-epochs", type=int, default=None,
                        help="warm-start epochs (default: the config's generator_warm_start_epochs; 0: untrained)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--single-long-calls", type=int, default=20,
                        help="single-item decodings in the longer length range to time for (c)")
    parser.add_argument("--items", type=int, default=None, help="first N items only (a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None, help="tokenizer and warm-start checkpoints")
    parser.add_argument("--output", type=Path, default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="diverse-ids-"))
    progress = lambda iterable, **kwargs: progress_bar(iterable, **kwargs)  # noqa: E731

    dataset = read_openp5_folder("toys", args.data)
    texts = dataset.item_text[:args.items] if args.items else dataset.item_text
    clock = time.perf_counter()
    tokenizer = build_tokenizer("cpu", "t5-small", list(texts) + template_words(False), work_dir / "tokenizer",
                                8000, args.seed)
    tokenizer_seconds = time.perf_counter() - clock
    config = IDGeneratorConfig(id_batch_size=args.batch_size)
    if args.warm_start_epochs is not None:
        config = dataclasses.replace(config, generator_warm_start_epochs=args.warm_start_epochs)
    context = RunContext(work_dir=work_dir, seed=args.seed, profile="cpu")
    generator = build_id_generator(config, "cpu", tokenizer, args.seed, context.runtime)
    report = warm_start(generator, texts, context)

    full, full_seconds, full_calls = timed_run(generator, texts, args.batch_size, progress)
    assert len(set(full.ids)) == len(texts)

    sample = sorted(random.Random(args.seed).sample(range(len(texts)), min(args.sample, len(texts))))
    sample_texts = [texts[item] for item in sample]
    batched, batched_seconds, _ = timed_run(generator, sample_texts, args.batch_size)
    single, single_seconds, single_calls = timed_run(generator, sample_texts, 1, progress)
    short_single = [seconds for min_length, _, seconds in single_calls if min_length == config.id_length_range[0]]
    long_single = [seconds for min_length, _, seconds in single_calls
                   if min_length == config.id_longer_length_range[0]]
    for text in sample_texts[:max(0, args.single_long_calls - len(long_single))]:
        clock = time.perf_counter()
        generator.candidates([text], 1.0, *config.id_longer_length_range)
        long_single.append(time.perf_counter() - clock)
    first_range_levels = sum(1 for level in full.schedule if level.range_index == 0)
    pending = pending_per_level(full)
    estimate = sum(count * statistics.mean(short_single if index < first_range_levels else long_single)
                   for index, count in enumerate(pending))

    phase0 = {}
    phase0_file = args.data / "item_generative_indexing_phase_0.txt"
    for line in phase0_file.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2:
            phase0[fields[0]] = " ".join(fields[1:])
    same_as_paper = sum(phase0.get(item) == identifier for item, identifier in zip(dataset.item_ids, full.ids))
    numbers = {
        "items": len(texts),
        "threads": args.threads,
        "vocab_size": len(tokenizer),
        "tokenizer_seconds": round(tokenizer_seconds, 1),
        "warm_start_epochs": config.generator_warm_start_epochs,
        "warm_start_learning_rate": config.generator_learning_rate,
        "warm_start_batch_size": config.generator_warm_start_batch_size,
        "warm_start_seconds": report.train_seconds if report else 0.0,
        "warm_start_final_loss": round(report.final_epoch_loss, 4) if report else None,
        "batch_size": args.batch_size,
        "batched_seconds": round(full_seconds, 1),
        "batched_decode_calls": len(full_calls),
        "items_decoded_per_level": pending,
        "stats": full.stats.to_dict(),
        "mean_id_words": round(statistics.mean(len(identifier.split()) for identifier in full.ids), 2),
        "ids_equal_to_paper_phase0": same_as_paper,
        "ids_equal_to_warm_start_target": sum(
            identifier == warm_start_target(text, config.generator_warm_start_words)
            for identifier, text in zip(full.ids, texts)),
        "first_ids": [(dataset.item_ids[item], full.ids[item], phase0.get(dataset.item_ids[item]))
                      for item in range(10)],
        "sample_items": len(sample),
        "sample_batched_seconds": round(batched_seconds, 2),
        "sample_one_at_a_time_seconds": round(single_seconds, 2),
        "sample_same_ids_batched_and_one_at_a_time": batched.ids == single.ids,
        "sample_ids_differing": sum(a != b for a, b in zip(batched.ids, single.ids)),
        "single_item_seconds_short_range": round(statistics.mean(short_single), 4),
        "single_item_seconds_long_range": round(statistics.mean(long_single), 4),
        "estimated_one_at_a_time_seconds": round(estimate, 1),
        "estimated_speedup": round(estimate / full_seconds, 1),
    }
    text = json.dumps(numbers, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
