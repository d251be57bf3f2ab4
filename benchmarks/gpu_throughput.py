"""The engine's training step at t5-small size on one GPU: examples/s and peak memory.

P5-SID-shaped work (prompts of about 100 tokens, targets of about 6) through the engine's
seq2seq task and :func:`bench.engine.training.train_model` is what a run does; here the step
alone is timed, with a T5 of t5-small's sizes and random weights (the hub is not needed), in
the runtime's bf16 autocast on ``cuda``. Part of benchmarks/gpu_check.sh.

    .venv/bin/python benchmarks/gpu_throughput.py --steps 200
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from bench.runtime import runtime_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="bf16")
    arguments = parser.parse_args()
    runtime = runtime_for("cuda", arguments.precision)
    config = T5Config(vocab_size=32128, d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_decoder_layers=6,
                      num_heads=8, feed_forward_proj="relu", pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config).to(runtime.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    inputs = torch.randint(2, 32128, (arguments.batch_size, 100), device=runtime.device)
    labels = torch.randint(2, 32128, (arguments.batch_size, 6), device=runtime.device)
    torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with runtime.autocast():
            loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(10):  # warm-up: kernels chosen, memory pools filled
        step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(arguments.steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    print(f"t5_small_{arguments.precision}_examples_per_second: {arguments.steps * arguments.batch_size / seconds:.1f} "
          f"({arguments.steps} steps of {arguments.batch_size} in {seconds:.1f} s on {torch.cuda.get_device_name()})")
    print(f"t5_small_{arguments.precision}_peak_gpu_memory_gib: {torch.cuda.max_memory_allocated() / 2**30:.2f}")


if __name__ == "__main__":
    main()
