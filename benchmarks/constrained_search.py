"""Time the trie-constrained beam search against Hugging Face generate (issue 3 item 3).

Builds a CPU-profile-sized T5 (random init: timing does not depend on training), a trie of
the 11,924 Amazon Toys textual item IDs (IDGenRec's phase-0 IDs, tokenized by a
SentencePiece model trained here in a temporary folder), and random prompts for a batch of
users. Then times, on the same model, users and trie:

  (a) bench.engine.beam_search.constrained_beam_search;
  (b) model.generate(num_beams, num_return_sequences, prefix_allowed_tokens_fn) with the
      dict-of-dicts trie walk that P5/IDGenRec-style code passes to it;
  (c) unconstrained beam searches of the same width: model.generate without the
      constraint, and a plain top-k beam step on the same incremental decoder as (a)
      for as many steps as (a) took (what (a) would cost without the trie).

Forward hooks time the model's own forward passes inside each run, so the table also shows
what each search costs beyond the network. Run:

    .venv/bin/python benchmarks/constrained_search.py --threads 1
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from bench.engine.beam_search import IncrementalDecoder, beams_share_prompt_attention, constrained_beam_search
from bench.engine.trie import ItemTrie
from bench.runtime import cpu_runtime

PAD, EOS, UNK = 0, 1, 2
DEFAULT_IDS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon-toys" / "item_generative_indexing_phase_0.txt"


def tokenized_item_ids(path: Path, vocab_size: int) -> tuple[list[list[int]], int]:
    """Each item's textual ID as SentencePiece tokens (T5 layout: pad 0, EOS 1, unk 2)."""
    import sentencepiece

    texts = [line.split(" ", 1)[1].strip() for line in path.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "ids.txt"
        corpus.write_text("\n".join(texts) + "\n")
        sentencepiece.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(folder) / "sp"), vocab_size=vocab_size,
            pad_id=PAD, eos_id=EOS, unk_id=UNK, bos_id=-1, character_coverage=1.0, minloglevel=2,
        )
        processor = sentencepiece.SentencePieceProcessor(model_file=str(Path(folder) / "sp.model"))
        return processor.encode(texts), processor.get_piece_size()


def build_model(vocab_size: int, d_model: int, layers: int, seed: int):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size, d_model=d_model, d_kv=32, d_ff=4 * d_model, num_layers=layers,
        num_decoder_layers=layers, num_heads=d_model // 32, dropout_rate=0.0,
        pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
    )
    return T5ForConditionalGeneration(config).eval()


def random_prompts(n_users: int, vocab_size: int, min_length: int, max_length: int, seed: int):
    rng = random.Random(seed)
    lengths = [rng.randint(min_length, max_length) for _ in range(n_users)]
    input_ids = torch.full((n_users, max(lengths)), PAD)
    attention_mask = torch.zeros(n_users, max(lengths), dtype=torch.long)
    for user, length in enumerate(lengths):
        input_ids[user, : length - 1] = torch.tensor([rng.randrange(3, vocab_size) for _ in range(length - 1)])
        input_ids[user, length - 1] = EOS
        attention_mask[user, :length] = 1
    return input_ids, attention_mask


def dict_trie_prefix_function(sequences: list[list[int]]):
    """The Python trie walk that P5/IDGenRec-style code gives to HF's prefix_allowed_tokens_fn."""
    root: dict = {}
    for sequence in sequences:
        node = root
        for token in list(sequence) + [EOS]:
            node = node.setdefault(token, {})

    def allowed(batch_id: int, prefix: torch.Tensor) -> list[int]:
        node = root
        for token in prefix.tolist()[1:]:  # after the decoder start token
            node = node.get(token)
            if node is None:
                return [PAD]
        return list(node) or [PAD]

    return allowed


def unconstrained_beam_search(model, input_ids, attention_mask, beam_width: int, steps: int) -> torch.Tensor:
    """Plain beam search on the same decoder as (a): full-vocabulary log-softmax and top-k."""
    with beams_share_prompt_attention(model):
        decoder = IncrementalDecoder(model, input_ids, attention_mask, cpu_runtime())
        log_probs = torch.log_softmax(decoder.start(), dim=-1)
        n_users, vocab_size = log_probs.shape
        scores = torch.zeros(n_users, 1)
        for _ in range(steps):
            n_beams = scores.shape[1]
            candidates = scores[:, :, None] + log_probs.view(n_users, n_beams, vocab_size)
            scores, flat = candidates.view(n_users, -1).topk(beam_width, dim=1)
            source_rows = torch.arange(n_users)[:, None] * n_beams + flat // vocab_size
            log_probs = torch.log_softmax(decoder.step(flat % vocab_size, source_rows), dim=-1)
    return scores


class ForwardTimer:
    """Seconds spent inside the model's (and its encoder's) forward, and the decoder calls."""

    def __init__(self, model) -> None:
        self.seconds = 0.0
        self.decoder_calls = 0
        self._started: dict[int, float] = {}
        for module in (model, model.get_encoder()):
            module.register_forward_pre_hook(self._before)
            module.register_forward_hook(self._after)
        self._model = model

    def _before(self, module, _inputs) -> None:
        self._started[id(module)] = time.perf_counter()

    def _after(self, module, _inputs, _outputs) -> None:
        if id(module) == id(self._model) and id(self._model.get_encoder()) in self._started:
            return  # an encoder call nested in a full forward is already counted there
        self.seconds += time.perf_counter() - self._started.pop(id(module))
        if id(module) == id(self._model):
            self.decoder_calls += 1

    def reset(self) -> None:
        self.seconds, self.decoder_calls, self._started = 0.0, 0, {}


def timed(label: str, timer: ForwardTimer, function, repeats: int) -> tuple[dict, object]:
    best, output = None, None
    for _ in range(repeats):
        timer.reset()
        start = time.perf_counter()
        output = function()
        total = time.perf_counter() - start
        if best is None or total < best["total"]:
            best = {"label": label, "total": total, "model": timer.seconds, "steps": timer.decoder_calls}
    return best, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--item-ids", type=Path, default=DEFAULT_IDS)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--prompt-length", type=int, nargs=2, default=(64, 128))
    parser.add_argument("--beam-width", type=int, default=20)
    parser.add_argument("--num-results", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per method")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sequences, vocab_size = tokenized_item_ids(args.item_ids, args.vocab_size)
    start = time.perf_counter()
    trie = ItemTrie.build(sequences, eos_token_id=EOS, pad_token_id=PAD)
    build_seconds = time.perf_counter() - start
    lengths = torch.tensor([len(sequence) for sequence in sequences], dtype=torch.float)
    print(f"items {trie.n_items}, vocab {vocab_size}, trie nodes {trie.n_nodes}, built in {build_seconds:.2f}s; "
          f"ID tokens mean {lengths.mean():.2f} max {int(lengths.max())}; root fan-out {int(trie.offsets[1])}")
    model = build_model(vocab_size, args.d_model, args.layers, seed=0)
    print(f"T5 d_model {args.d_model}, {args.layers}+{args.layers} layers, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; {args.users} users, "
          f"prompts {args.prompt_length[0]}-{args.prompt_length[1]} tokens, beam {args.beam_width}, "
          f"top {args.num_results}, {args.threads} thread(s)")
    input_ids, attention_mask = random_prompts(args.users, vocab_size, *args.prompt_length, seed=1)
    timer = ForwardTimer(model)
    prefix_function = dict_trie_prefix_function(sequences)
    hf_options = dict(
        input_ids=input_ids, attention_mask=attention_mask, num_beams=args.beam_width, do_sample=False,
        num_return_sequences=args.num_results, max_new_tokens=trie.max_depth,
        # Rank by the total log-probability, as the constrained search does.
        length_penalty=0.0, early_stopping=True,
    )

    with torch.no_grad():
        ours, (our_items, _) = timed("ours, constrained", timer, lambda: constrained_beam_search(
            model, input_ids, attention_mask, trie, args.beam_width, args.num_results, runtime=cpu_runtime()),
            args.repeats)
        hf, hf_sequences = timed("HF generate + prefix_allowed_tokens_fn", timer, lambda: model.generate(
            **hf_options, prefix_allowed_tokens_fn=prefix_function), args.repeats)
        free, _ = timed("HF generate, unconstrained", timer, lambda: model.generate(**hf_options), args.repeats)
        plain, _ = timed("ours, unconstrained (same steps)", timer, lambda: unconstrained_beam_search(
            model, input_ids, attention_mask, args.beam_width, ours["steps"] - 1), args.repeats)

    # Agreement of the two constrained searches (the same objective: total log-prob).
    item_of = {tuple(sequence): item for item, sequence in enumerate(sequences)}
    hf_items = [[item_of.get(tuple(t for t in row.tolist()[1:] if t not in (PAD, EOS)), -1)
                 for row in hf_sequences[user * args.num_results : (user + 1) * args.num_results]]
                for user in range(args.users)]
    overlap = sum(len(set(hf_items[user]) & set(our_items[user].tolist())) for user in range(args.users))
    print(f"top-{args.num_results} overlap with HF constrained: {overlap / (args.users * args.num_results):.3f}; "
          f"HF invalid items: {sum(item < 0 for row in hf_items for item in row)}")

    print(f"{'search':42s} {'total s':>8s} {'steps':>6s} {'ms/step':>8s} {'model s':>8s} {'other s':>8s}")
    for row in (ours, hf, free, plain):
        per_step = 1000 * row["total"] / max(row["steps"], 1)
        print(f"{row['label']:42s} {row['total']:8.2f} {row['steps']:6d} {per_step:8.1f} "
              f"{row['model']:8.2f} {row['total'] - row['model']:8.2f}")
    print(f"ours, constrained vs unconstrained on the same decoder: "
          f"{ours['total'] / plain['total']:.2f}x the time; beyond the forward passes "
          f"{ours['total'] - ours['model']:.2f}s vs {plain['total'] - plain['model']:.2f}s")
    print(f"speedup_vs_hf_generate: {hf['total'] / ours['total']:.2f}")


if __name__ == "__main__":
    main()
