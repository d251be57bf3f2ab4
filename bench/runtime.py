"""The run's runtime: the one object that places tensors and talks to the other processes.

The runner builds it once from the method's :class:`bench.devices.DeviceConfig`
(:func:`start_runtime`) and hands it to the method in the run context
(``RunContext.runtime``); the training loop, the beam searches, the evaluator and the
methods take it from there, as Hugging Face's examples hand an ``Accelerator`` around.
Nothing reads a module-global "current" runtime. Every torch-based part asks it for
placement, autocast, the data-parallel wrapper, sharding and gathering; nothing else calls
``.to(device)`` or ``torch.distributed``. It is a thin layer over Hugging Face Accelerate
(placement, autocast, fp16 loss scaling, DDP), so a run started by ``torchrun`` or
``accelerate launch`` (``WORLD_SIZE``/``RANK`` in the environment, as in a SLURM job) joins
the same process group as ``bench run --processes N``.

Accelerate keeps its state in process-wide singletons, so :func:`runtime_for` builds one
:class:`Runtime` per (device, precision) and hands the same one back when asked again; the
fp32 and bf16 ones share one Accelerate state, because the precision is applied by
:meth:`Runtime.autocast` around each call, never stored on a model (Accelerate's own bf16
mode wraps a prepared model's ``forward`` in autocast for good).
"""

from __future__ import annotations

import contextlib
import os
import platform
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.allocator import allocator_state, hold_freed_memory
from bench.devices import DeviceConfig, cpu_name, cuda_index, resolve_device_type, resolve_precision, \
    validate_device_options
from bench.errors import BenchError

if TYPE_CHECKING:
    import torch

_runtimes: "dict[tuple[str, str], Runtime]" = {}  # (device option, precision) -> its runtime, built once
_accelerator_key: tuple[str, int | None, str] | None = None  # (device type, CUDA index, Accelerate precision)


class Runtime:
    """This process's device, precision and place among the processes of the run.

    Build it with :func:`runtime_for` (the runner: :func:`start_runtime`). Training: ``prepare_training`` places (and, with
    several processes, wraps in DDP) the model, then each step runs under ``autocast()``
    and calls ``backward``/``clip_grad_norm_`` here (fp16's loss scaler lives here).
    Checkpoints hold ``unwrap(model).state_dict()``, so they load with any process count.
    """

    def __init__(self, device: str, precision: str, accelerator: Any) -> None:
        self.requested_device, self.precision = device, precision
        self._accelerator = accelerator

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        # A saved method's context holds its runtime: loaded in another process, it is that
        # process's runtime of the same device and precision.
        return runtime_for, (self.requested_device, self.precision)

    # -- where and who ------------------------------------------------------------------
    @property
    def device(self) -> "torch.device":
        return self._accelerator.device

    @property
    def num_processes(self) -> int:
        return self._accelerator.num_processes

    @property
    def process_index(self) -> int:
        return self._accelerator.process_index

    @property
    def is_main_process(self) -> bool:
        return self._accelerator.is_main_process

    # -- training -----------------------------------------------------------------------
    def prepare_training(self, model: Any, optimizer: Any, scheduler: Any) -> tuple[Any, Any, Any]:
        """The model on this process's device (DDP-wrapped with several processes), the
        optimizer (stepping through the fp16 loss scaler) and the scheduler."""
        model, optimizer, scheduler = self._accelerator.prepare(model, optimizer, scheduler)
        return model, optimizer, scheduler

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision autocast of this runtime's precision (a no-op for fp32)."""
        if self.precision == "bf16":
            import torch

            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return self._accelerator.autocast()  # fp16: Accelerate's (with its loss scaler); fp32: nothing

    def backward(self, loss: "torch.Tensor") -> None:
        """``loss.backward()``, through the loss scaler for fp16 (DDP averages gradients over processes)."""
        self._accelerator.backward(loss)

    def clip_grad_norm_(self, parameters: Any, max_norm: float) -> "torch.Tensor":
        """Clip the (unscaled) gradient norm; returns the norm before clipping."""
        return self._accelerator.clip_grad_norm_(parameters, max_norm)

    def no_sync(self, model: Any) -> contextlib.AbstractContextManager:
        """Skip DDP's gradient all-reduce inside the block (accumulation steps before the last)."""
        return self._accelerator.no_sync(model)

    def unwrap(self, model: Any) -> Any:
        """The plain model under the DDP/autocast wrappers (what a checkpoint saves and loads)."""
        return self._accelerator.unwrap_model(model)

    def scaler_state(self) -> dict[str, Any] | None:
        """fp16's loss-scaler state for an exact resume (None when there is no scaler)."""
        scaler = self._accelerator.scaler
        return None if scaler is None else scaler.state_dict()

    def load_scaler_state(self, state: dict[str, Any] | None) -> None:
        if state is not None and self._accelerator.scaler is not None:
            self._accelerator.scaler.load_state_dict(state)

    # -- inference ----------------------------------------------------------------------
    def place(self, model: Any) -> Any:
        """``model`` moved to this process's device for inference (no wrapper); something
        that cannot move (a plain function standing in for a model) is returned as it is."""
        return model.to(self.device) if hasattr(model, "to") else model

    def to_device(self, obj: Any) -> Any:
        """A tensor, or a dict/list/tuple of tensors (other values left alone), on this device."""
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.to(self.device, non_blocking=True)
        if isinstance(obj, dict):
            return type(obj)({key: self.to_device(value) for key, value in obj.items()})
        if isinstance(obj, (list, tuple)):
            moved = [self.to_device(value) for value in obj]
            return type(obj)(*moved) if hasattr(obj, "_fields") else type(obj)(moved)
        if hasattr(obj, "to") and hasattr(obj, "keys"):  # transformers' BatchEncoding
            return obj.to(self.device)
        return obj

    # -- processes ----------------------------------------------------------------------
    def shard(self, n: int) -> np.ndarray:
        """This process's indices of ``0..n-1``: contiguous blocks, sizes differing by at most
        one, nothing padded or repeated, so gathering the blocks in process order restores 0..n-1."""
        return shard_indices(n, self.num_processes, self.process_index)

    def gather_shards(self, local: np.ndarray, n: int) -> np.ndarray:
        """The full ``[n, ...]`` array on every process: each process's contiguous block of rows
        (the rows of its :meth:`shard`, or of whole batches of it), concatenated in process order."""
        local = np.asarray(local)
        if self.num_processes == 1:
            if local.shape[0] != n:
                raise RuntimeError(f"gathered {local.shape[0]} rows from 1 process, expected {n}")
            return local
        import torch.distributed as distributed

        parts: list[Any] = [None] * self.num_processes
        # Objects, not tensors: exact dtypes and unequal shard sizes without padding.
        distributed.all_gather_object(parts, local)
        full = np.concatenate(parts, axis=0)
        if full.shape[0] != n:
            raise RuntimeError(f"gathered {full.shape[0]} rows from {self.num_processes} processes, expected {n}")
        return full

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in process order, on every process (e.g. the RNG states
        a checkpoint keeps per process: each draws its own dropout masks)."""
        if self.num_processes == 1:
            return [obj]
        import torch.distributed as distributed

        gathered: list[Any] = [None] * self.num_processes
        distributed.all_gather_object(gathered, obj)
        return gathered

    def mean_across_processes(self, value: float) -> float:
        """The mean of one number over the processes (e.g. an epoch's loss), the same on every process."""
        if self.num_processes == 1:
            return float(value)
        import torch.distributed as distributed

        values: list[Any] = [None] * self.num_processes
        distributed.all_gather_object(values, float(value))
        return float(np.mean(values))

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process (e.g. a run id drawn at random)."""
        if self.num_processes == 1:
            return obj
        import torch.distributed as distributed

        holder = [obj]
        distributed.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        self._accelerator.wait_for_everyone()

    # -- record -------------------------------------------------------------------------
    def hardware(self) -> dict[str, Any]:
        """What the record says the run ran on."""
        import torch

        device = self.device
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        elif device.type == "mps":
            name = f"Apple MPS ({platform.machine()})"
        else:
            name = cpu_name()
        return {
            "device_type": device.type,
            "device": str(device),
            "device_name": name,
            "processes": self.num_processes,
            "distributed_backend": self._accelerator.state.backend if self.num_processes > 1 else None,
            "precision": self.precision,
            "allocator": allocator_state(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        }


def shard_indices(n: int, processes: int, index: int) -> np.ndarray:
    """Process ``index``'s contiguous block of ``0..n-1`` out of ``processes`` blocks."""
    return np.array_split(np.arange(n, dtype=np.int64), processes)[index]


def _accelerator_mode(device: str, precision: str) -> tuple[str, int | None, str]:
    """What an Accelerate state is built for: fp32 and bf16 share one (bf16 is this module's autocast)."""
    index = cuda_index(device) if device.startswith("cuda") else None
    return resolve_device_type(device), index, "fp16" if precision == "fp16" else "no"


def _build_accelerator(device: str, key: tuple[str, int | None, str]) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    device_type, index, mixed_precision = key
    previous = os.environ.get("ACCELERATE_TORCH_DEVICE")
    if index is not None:
        # Accelerate's one documented way to pick a GPU other than the local rank's.
        os.environ["ACCELERATE_TORCH_DEVICE"] = device
    try:
        return Accelerator(
            cpu=device_type == "cpu", mixed_precision=mixed_precision,
            # The loop steps the scheduler once per optimizer step, whatever the process
            # count: the global batch (and so the schedule) is that of one process.
            step_scheduler_with_optimizer=False,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
    finally:
        if index is not None:
            if previous is None:
                os.environ.pop("ACCELERATE_TORCH_DEVICE", None)
            else:
                os.environ["ACCELERATE_TORCH_DEVICE"] = previous


def runtime_for(device: str = "auto", precision: str = "fp32") -> Runtime:
    """This process's runtime for ``device`` and ``precision``, built on first use (under a
    launcher the first one joins the process group). fp32 and bf16 runtimes of one device live
    side by side; another device, or fp16 next to fp32/bf16, rebuilds Accelerate's process-wide state, which only a single process may
    do (tests do; the runtimes built before are then dropped)."""
    global _accelerator_key
    precision = resolve_precision(device, precision) if precision == "auto" else precision
    if (device, precision) in _runtimes:
        return _runtimes[(device, precision)]
    validate_device_options(device, precision)
    key = _accelerator_mode(device, precision)
    shared = next(iter(_runtimes.values()), None)
    if shared is not None and key == _accelerator_key:
        accelerator = shared._accelerator
    else:
        if shared is not None:
            if shared.num_processes > 1:
                raise BenchError(f"this {shared.num_processes}-process run already uses device="
                                 f"{shared.requested_device}, precision={shared.precision}; one run cannot "
                                 f"also use device={device}, precision={precision}")
            from accelerate.state import AcceleratorState, GradientState

            # Accelerate keeps its state in process-wide singletons: clear them to rebuild.
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()
            _runtimes.clear()
        accelerator = _build_accelerator(device, key)
        _accelerator_key = key
    _runtimes[(device, precision)] = Runtime(device, precision, accelerator)
    return _runtimes[(device, precision)]


def start_runtime(config: DeviceConfig | None) -> Runtime:
    """The run's runtime from its method's device options (a method without them runs on the
    CPU in fp32), with torch held to ``threads`` CPU threads when that option is set and the
    process's allocator keeping freed memory for the next step (:mod:`bench.allocator`)."""
    hold_freed_memory()
    if config is None:
        return runtime_for("cpu", "fp32")
    runtime = runtime_for(config.device, config.precision)
    hold_threads(config.threads)
    return runtime


def hold_threads(threads: int) -> None:
    """torch's intra-op CPU threads for this process (0 keeps torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def cpu_runtime() -> Runtime:
    """The runtime of a run context made without one (tests, tools): the CPU in fp32."""
    return runtime_for("cpu", "fp32")
