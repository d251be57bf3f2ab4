"""The run's placement options and what this machine offers, without importing torch at start.

``DeviceConfig`` is the one declaration of the options every torch-based method shares:
- ``device``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``;
  with several processes each takes ``cuda:LOCAL_RANK``, so ``cuda:N`` is refused there.
- ``precision``: ``fp32``, ``bf16`` (autocast; on CPU it runs natively with AVX-512 BF16 or
  AMX, emulated and slow otherwise), ``fp16`` (autocast with loss scaling, CUDA only), or
  ``auto`` (bf16 where the hardware has it, else fp32; :func:`resolve_precision`). The runner
  resolves ``auto`` once, so a record and its work folder name the precision that ran.
- ``threads``: torch's CPU threads for the run (0 keeps torch's default).

The runner builds the run's :class:`bench.runtime.Runtime` from them once
(:func:`bench.runtime.start_runtime`). The launcher's process count and rank are read here
too, from the environment, before torch is imported.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any

from bench.config import NON_NEGATIVE, Options, option
from bench.errors import BenchError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
THREADS_HELP = "torch CPU threads for training and decoding (0 keeps torch's default)"


def threads_option(default: int) -> Any:
    """The ``threads`` option at a method family's own default (RecBole's runs use two)."""
    return option(default, THREADS_HELP, range=NON_NEGATIVE)


@dataclasses.dataclass(frozen=True)
class DeviceConfig(Options):
    """Where and how a run computes: a mixin of every torch-based method's config."""

    device: str = option("auto", "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps; with several "
                                 "processes each takes the GPU of its local rank", added_later=True)
    precision: str = option("fp32", "fp32, bf16 (autocast; CUDA, or a CPU with AVX-512 BF16/AMX), fp16 "
                                    "(autocast with loss scaling, CUDA only) or auto (bf16 where the hardware "
                                    "computes it, else fp32; resolved once per run)", added_later=True)
    threads: int = threads_option(0)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_option_values(self.device, self.precision)


def launched_processes() -> int:
    """Processes of this run as the launcher (torchrun, accelerate launch, SLURM) set them; 1 when none."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise BenchError(f"environment variable WORLD_SIZE must be an integer, got '{os.environ['WORLD_SIZE']}'") \
            from None


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 when not launched), readable before torch is imported."""
    return int(os.environ.get("RANK", "0") or 0)


def cuda_index(device: str) -> int | None:
    """N of ``cuda:N``, None for ``cuda``; BenchError for anything else that starts with ``cuda``."""
    if device == "cuda":
        return None
    suffix = device[len("cuda:"):]
    if not device.startswith("cuda:") or not suffix.isdigit():
        raise BenchError(f"config key 'device' must be one of {', '.join(DEVICES)}; got '{device}'")
    return int(suffix)


def resolve_device_type(device: str) -> str:
    """``cpu``, ``cuda`` or ``mps`` for a validated ``device`` option (``auto`` = CUDA when present)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else device


def check_option_values(device: str, precision: str) -> None:
    """The checks a config can make without torch and without the run's machine (a sweep
    resolves configs on a login node that has no GPU): known values, fp16 never on CPU/MPS."""
    if precision not in PRECISIONS:
        raise BenchError(f"config key 'precision' must be one of {', '.join(PRECISIONS)}; got '{precision}'")
    if device not in ("auto", "cpu", "mps"):
        cuda_index(device)
    if precision == "fp16" and device in ("cpu", "mps"):
        raise BenchError(f"config key 'precision' is 'fp16', which needs a CUDA device (loss scaling); this run's "
                         f"device is {device}; use precision=bf16 or fp32")


# What ``auto`` can become (:func:`resolve_precision`); the runner records the resolved value.
AUTO_PRECISION_CHOICES = ("bf16", "fp32")


def resolve_precision(device: str, precision: str) -> str:
    """``auto``: bf16 where the hardware computes it (a CUDA GPU with bfloat16, or a CPU with
    AVX-512 BF16 or AMX), else fp32. On a CPU without them bf16 is emulated: a bf16 matrix
    multiply of the engine's shapes took 20-40x the time of fp32 on an AVX2-only CPU
    (benchmarks/README.md, precision). Any other value is returned as it is."""
    if precision != "auto":
        return precision
    import torch

    device_type = resolve_device_type(device)
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device_type == "cpu":
        return "bf16" if cpu_bf16_native() else "fp32"
    return "fp32"


def validate_device_options(device: str, precision: str) -> None:
    """BenchError naming the key when ``device``/``precision`` is unknown or not available on this machine."""
    check_option_values(device, precision)
    import torch

    if device.startswith("cuda"):
        index = cuda_index(device)
        if not torch.cuda.is_available():
            raise BenchError(f"config key 'device' is '{device}' but torch finds no CUDA device on this machine "
                             f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
                             "use device=cpu or device=auto, and see `bench doctor`")
        if index is not None and index >= torch.cuda.device_count():
            raise BenchError(f"config key 'device' is '{device}' but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})")
        if index is not None and launched_processes() > 1:
            raise BenchError(f"config key 'device' is '{device}' in a {launched_processes()}-process run; each "
                             "process takes the GPU of its local rank, so use device=cuda (or choose the GPUs "
                             "with CUDA_VISIBLE_DEVICES)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise BenchError("config key 'device' is 'mps' but torch finds no Apple MPS device on this machine")
    device_type = resolve_device_type(device)
    if precision == "fp16" and device_type != "cuda":
        raise BenchError(f"config key 'precision' is 'fp16', which needs a CUDA device (loss scaling); this run's "
                         f"device is {device_type}; use precision=bf16 or fp32")
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BenchError(f"config key 'precision' is 'bf16' but the GPU ({torch.cuda.get_device_name()}) does not "
                         "support bfloat16; use precision=fp16 or fp32")


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX); else bf16 is emulated."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
