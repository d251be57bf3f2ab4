"""bf16 against fp32 on this CPU, at the shapes of the engine's matrix multiplies.

`precision=auto` (the cpu profiles' default) picks bf16 only where the hardware computes it
(AVX-512 BF16 or AMX); this benchmark shows what the choice is worth on the machine at hand.
For each shape (rows x inner x columns of a TIGER-sized T5 step at batch 64, in the layouts
forward and backward use) it times one thread's matrix multiply in CPU seconds and prints
`bf16_over_fp32_time[SHAPE]: X` (above 1: bf16 is slower), then the geometric mean.

    .venv/bin/python benchmarks/precision_matmul.py
"""

from __future__ import annotations

import math
import time

import torch

from bench.devices import cpu_bf16_native, cpu_name, resolve_precision

ROWS = 64 * 41  # batch 64, 41 input tokens
SHAPES = [(ROWS, 128, 384), (ROWS, 384, 128), (ROWS, 128, 1024), (ROWS, 1024, 128), (128, ROWS, 384),
          (1024, ROWS, 128)]


def cpu_seconds(left: torch.Tensor, right: torch.Tensor, repeats: int = 5) -> float:
    left @ right
    started = time.process_time()
    for _ in range(repeats):
        left @ right
    return (time.process_time() - started) / repeats


def main() -> None:
    torch.set_num_threads(1)
    print(f"cpu: {cpu_name()}; torch {torch.__version__}; capability {torch.backends.cpu.get_cpu_capability()}; "
          f"bf16 native: {cpu_bf16_native()}; precision=auto resolves to {resolve_precision('cpu', 'auto')}")
    ratios = []
    for rows, inner, columns in SHAPES:
        for layout in ("NN", "TN"):
            left = torch.randn(rows, inner) if layout == "NN" else torch.randn(inner, rows).t()
            right = torch.randn(inner, columns)
            fp32 = cpu_seconds(left, right)
            bf16 = cpu_seconds(left.bfloat16(), right.bfloat16())
            ratios.append(bf16 / fp32)
            print(f"bf16_over_fp32_time[{rows}x{inner}x{columns} {layout}]: {bf16 / fp32:.2f} "
                  f"(fp32 {fp32 * 1e3:.1f} ms, bf16 {bf16 * 1e3:.1f} ms)", flush=True)
    print(f"bf16_over_fp32_time_geomean: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}")


if __name__ == "__main__":
    main()
