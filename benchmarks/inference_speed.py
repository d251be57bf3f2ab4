"""Time SETRec's scoring against IDGenRec's ranking on the same users (issue 11, part 3).

One run, one thread, the same sample of users of the chronological Amazon Toys data
(leave-one-out test histories), same-sized T5 backbones (random weights: the time of a
forward pass does not depend on them), and the top ``k`` items per user from each of:

  (a) SETRec: ``methods.setrec.method.SETRec.score`` (one encoder and one decoder pass per
      batch of users, inner products with all items' token sets, history of 50 items as
      sets of 1 + n_sem tokens), then the top k of the scores; the once-per-run computation
      of all items' token sets (CF projection, semantic autoencoder) is counted too;
      each of (a)-(c) first runs 4 users untimed (first-call initialisation);
  (b) IDGenRec with the engine's constrained beam search
      (``bench.engine.beam_search.constrained_beam_search``) over the trie of the items'
      textual IDs (the IDGenRec release's phase-0 IDs), prompts of the 20 most recent IDs;
  (c) IDGenRec with Hugging Face ``generate`` and a ``prefix_allowed_tokens_fn`` walking a
      dict trie, as P5/IDGenRec code ranks (and as the SETRec paper's 658 s were measured).

Prints the wall and CPU seconds of each and ``setrec_vs_idgenrec_inference: X`` (b / a) and
``setrec_vs_hf_idgenrec_inference: Y`` (c / a), ratios of CPU seconds: with one thread they
measure the work done, while wall seconds grow with whatever else runs on the machine.
Run from the project root:

    .venv/bin/python benchmarks/inference_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from constrained_search import dict_trie_prefix_function  # noqa: E402 (the benchmark next door)

from bench.data.openp5 import read_openp5_folder  # noqa: E402
from bench.data.split import leave_one_out  # noqa: E402
from bench.engine.beam_search import constrained_beam_search  # noqa: E402
from bench.engine.model import T5EngineConfig, build_small_model, count_parameters  # noqa: E402
from bench.engine.prompts import TEST_TEMPLATE, build_prompt, template_words  # noqa: E402
from bench.engine.tokenizer import build_tokenizer  # noqa: E402
from bench.engine.trie import ItemTrie  # noqa: E402
from bench.method import RunContext  # noqa: E402
from bench.runtime import cpu_runtime  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon-toys-p5-order"
IDS_FILE = "item_generative_indexing_phase_0.txt"
WARM_UP = 4  # users run once, untimed, before each timed run


def textual_ids(directory: Path, item_ids: list[str]) -> list[str]:
    """IDGenRec's phase-0 textual ID of each item (the release ships them per ASIN)."""
    by_item = dict(line.split(" ", 1) for line in (directory / IDS_FILE).read_text().splitlines() if line.strip())
    ids = [by_item[item].strip() for item in item_ids]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{directory / IDS_FILE}: textual IDs are not unique")
    return ids


class Clock:
    """Wall and CPU seconds since start. With one thread, CPU seconds are the work done, and
    they hold still when other jobs share the cores (wall seconds do not)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def batches(values: np.ndarray, size: int):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def time_setrec(args, engine: T5EngineConfig, dataset, users: np.ndarray, histories, work: Path) -> tuple[float, dict]:
    from methods.setrec.method import INSTRUCTION, RESPONSE, SETRec, SETRecConfig
    from methods.setrec.model import SETRecModel

    config = SETRecConfig(d_model=engine.d_model, d_ff=engine.d_ff, num_layers=engine.num_layers,
                          num_heads=engine.num_heads, d_kv=engine.d_kv, threads=args.threads, device="cpu")
    tokenizer = build_tokenizer("cpu", config.backbone, [INSTRUCTION, RESPONSE] + list(dataset.item_text),
                                work / "setrec-tokenizer", 500, args.seed)
    rng = np.random.default_rng(args.seed)
    words = tokenizer([INSTRUCTION, RESPONSE], add_special_tokens=False).input_ids
    network = SETRecModel(build_small_model(config, len(tokenizer), args.seed), words[0], words[1],
                          rng.normal(size=(dataset.n_items, config.cf_hidden_size)).astype(np.float32),
                          rng.normal(size=(dataset.n_items, 384)).astype(np.float32),  # MiniLM's size
                          config.n_sem, config.autoencoder_layers, config.alpha)
    method = SETRec(config, RunContext(work_dir=work, seed=args.seed, profile="cpu", show_progress=False))
    method.network, method.beta = network, 0.5
    method._freeze_item_tokens()
    method.score(users[:WARM_UP], histories[:WARM_UP])  # untimed: first-call initialisation
    clock = Clock()
    method._freeze_item_tokens()  # all items' token sets, once per run
    tokens_seconds = clock.read()
    for batch in batches(np.arange(len(users)), args.batch_size):
        scores = method.score(users[batch], [histories[i] for i in batch])
        top = np.argpartition(-scores, args.k, axis=1)[:, :args.k]
        np.take_along_axis(scores, top, axis=1).argsort(axis=1)
    return clock.read(), {"parameters": count_parameters(network), "max_history": config.max_history,
                     "tokens_per_item": 1 + config.n_sem, "tokens_seconds": tokens_seconds}


def idgenrec_inputs(args, engine: T5EngineConfig, ids: list[str], histories, work: Path):
    tokenizer = build_tokenizer("cpu", engine.backbone, ids + template_words(False), work / "idgenrec-tokenizer",
                                args.vocab_size, args.seed)
    model = build_small_model(engine, len(tokenizer), args.seed).eval()
    sequences = tokenizer(ids, add_special_tokens=False).input_ids
    trie = ItemTrie.build([s + [tokenizer.eos_token_id] for s in sequences], tokenizer.eos_token_id,
                          tokenizer.pad_token_id)
    prompts = [build_prompt([ids[item] for item in history[-args.idgenrec_history:]], args.idgenrec_history,
                            TEST_TEMPLATE) for history in histories]
    return tokenizer, model, sequences, trie, prompts


def time_beam_search(args, tokenizer, model, trie, prompts) -> tuple[float, float]:
    encoded = tokenizer(prompts[:WARM_UP], padding=True, return_tensors="pt")
    with torch.no_grad():  # untimed: first-call initialisation
        constrained_beam_search(model, encoded.input_ids, encoded.attention_mask, trie, args.beam_width, args.k,
                                runtime=cpu_runtime())
    clock = Clock()
    with torch.no_grad():
        for batch in batches(np.arange(len(prompts)), args.batch_size):
            encoded = tokenizer([prompts[i] for i in batch], padding=True, return_tensors="pt")
            constrained_beam_search(model, encoded.input_ids, encoded.attention_mask, trie, args.beam_width, args.k,
                                    runtime=cpu_runtime())
    return clock.read()


def time_hf_generate(args, tokenizer, model, sequences, trie, prompts) -> tuple[float, float]:
    prefix_function = dict_trie_prefix_function(sequences)

    def generate(rows) -> None:
        encoded = tokenizer([prompts[i] for i in rows], padding=True, return_tensors="pt")
        model.generate(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask,
                       num_beams=args.beam_width, num_return_sequences=args.k, do_sample=False,
                       max_new_tokens=trie.max_depth, length_penalty=0.0, early_stopping=True,
                       prefix_allowed_tokens_fn=prefix_function)

    with torch.no_grad():
        generate(range(WARM_UP))  # untimed: first-call initialisation
        clock = Clock()
        for batch in batches(np.arange(len(prompts)), args.batch_size):
            generate(batch)
    return clock.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--users", type=int, default=256, help="fixed random sample of test users")
    parser.add_argument("--batch-size", type=int, default=64, help="users per call, the same for all three")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--d-model", type=int, default=128, help="128, 2 layers: the cpu profile; "
                                                                  "512, 6 layers, 8 heads, d_kv 64, d_ff 2048: t5-small")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-kv", type=int, default=32)
    parser.add_argument("--d-ff", type=int, default=512)
    parser.add_argument("--vocab-size", type=int, default=8000, help="IDGenRec's cpu tokenizer (trained on the IDs)")
    parser.add_argument("--idgenrec-history", type=int, default=20, help="IDGenRec's max_history")
    parser.add_argument("--beam-width", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    dataset = read_openp5_folder("toys", args.data_dir)
    split = leave_one_out(dataset)
    users = np.sort(np.random.default_rng(args.seed).choice(split.n_users, size=min(args.users, split.n_users),
                                                            replace=False))
    all_histories = split.histories("test")
    histories = [all_histories[user] for user in users.tolist()]
    engine = T5EngineConfig(d_model=args.d_model, d_ff=args.d_ff, num_layers=args.layers, num_heads=args.heads,
                            d_kv=args.d_kv)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        ids = textual_ids(args.data_dir, dataset.item_ids)
        tokenizer, model, sequences, trie, prompts = idgenrec_inputs(args, engine, ids, histories, work)
        setrec_seconds, setrec_facts = time_setrec(args, engine, dataset, users, histories, work)
        beam_seconds = time_beam_search(args, tokenizer, model, trie, prompts)
        hf_seconds = time_hf_generate(args, tokenizer, model, sequences, trie, prompts)

    prompt_tokens = np.mean([len(tokenizer(p).input_ids) for p in prompts])
    print(f"data {args.data_dir} ({dataset.n_users} users, {dataset.n_items} items); {len(users)} test users "
          f"(seed {args.seed}), batches of {args.batch_size}, top {args.k}, {args.threads} thread(s)")
    print(f"T5 d_model {args.d_model}, {args.layers}+{args.layers} layers, {args.heads} heads; "
          f"SETRec {setrec_facts['parameters'] / 1e6:.2f}M parameters, history {setrec_facts['max_history']} items x "
          f"{setrec_facts['tokens_per_item']} tokens; IDGenRec {count_parameters(model) / 1e6:.2f}M parameters, "
          f"history {args.idgenrec_history} IDs ({prompt_tokens:.1f} prompt tokens on average), vocabulary "
          f"{len(tokenizer)}, trie of {trie.n_nodes} nodes (IDs of up to {trie.max_depth - 1} tokens), beam "
          f"{args.beam_width}")
    once_wall, once_cpu = setrec_facts["tokens_seconds"]
    print(f"SETRec: all items' token sets, once: {once_cpu:.2f} CPU s (counted in its total)")
    print(f"{'':50s} {'wall s':>8s} {'CPU s':>8s} {'CPU ms/user':>12s}")
    for label, (wall, cpu) in (("SETRec scoring + top-k", setrec_seconds),
                               ("IDGenRec, our constrained beam search", beam_seconds),
                               ("IDGenRec, HF generate + prefix_allowed_tokens_fn", hf_seconds)):
        print(f"{label:50s} {wall:8.2f} {cpu:8.2f} {1000 * cpu / len(users):12.2f}")
    print(f"wall-clock ratios: {beam_seconds[0] / setrec_seconds[0]:.2f} (ours), "
          f"{hf_seconds[0] / setrec_seconds[0]:.2f} (HF generate)")
    # The ratios of record are of CPU seconds (one thread): the work each side does.
    print(f"setrec_vs_idgenrec_inference: {beam_seconds[1] / setrec_seconds[1]:.2f}")
    print(f"setrec_vs_hf_idgenrec_inference: {hf_seconds[1] / setrec_seconds[1]:.2f}")


if __name__ == "__main__":
    main()
