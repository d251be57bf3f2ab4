"""Device, precision and processes: the one module that places tensors and talks to the other processes.

Every torch-based part of the engine (training loop, beam searches, IDGenRec's phases) and
the evaluator ask the process's :class:`Runtime` for placement, autocast, the data-parallel
wrapper, sharding and gathering; nothing else calls ``.to(device)`` or ``torch.distributed``.
It is a thin layer over Hugging Face Accelerate (placement, autocast, fp16 loss scaling,
DDP), so a run started by ``torchrun`` or ``accelerate launch`` (``WORLD_SIZE``/``RANK`` in
the environment, as in a SLURM job) joins the same process group as ``bench run --processes N``.

Options (identical for every method that has them):
- ``device``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``;
  with several processes each takes ``cuda:LOCAL_RANK``, so ``cuda:N`` is refused there.
- ``precision``: ``fp32``, ``bf16`` (autocast; on CPU it runs natively with AVX-512 BF16 or
  AMX, emulated and slow otherwise), ``fp16`` (autocast with loss scaling, CUDA only), or
  ``auto`` (bf16 where the hardware has it, else fp32; :func:`resolve_precision`). The runner
  resolves ``auto`` once, so a record and its work folder name the precision that ran.

One process may use several precisions (IDGenRec trains its ID generator and its
recommender with separate configs): :func:`runtime_for` gives one :class:`Runtime` per
(device, precision), and the fp32 and bf16 ones share one Accelerate state, because the
precision is applied by :meth:`Runtime.autocast` around each call, never stored on a model
(Accelerate's own bf16 mode wraps a prepared model's ``forward`` in autocast for good).
:func:`get_runtime` also makes its runtime the run's; :func:`current_runtime` is the
runtime of the innermost :meth:`Runtime.activated` block (the training loop activates its
own), else the run's, so which precision a part runs in never depends on what ran before.
"""

from __future__ import annotations

import contextlib
import os
import platform
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from bench.errors import BenchError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_runtimes: "dict[tuple[str, str], Runtime]" = {}  # (device option, precision) -> its runtime
_accelerator_key: tuple[str, int | None, str] | None = None  # (device type, CUDA index, Accelerate precision)
_run_runtime: "Runtime | None" = None  # the last one get_runtime returned
_active: "list[Runtime]" = []  # open Runtime.activated() blocks, innermost last


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


def _cuda_index(device: str) -> int | None:
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
        _cuda_index(device)
    if precision == "fp16" and device in ("cpu", "mps"):
        raise BenchError(f"config key 'precision' is 'fp16', which needs a CUDA device (loss scaling); this run's "
                         f"device is {device}; use precision=bf16 or fp32")


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
        index = _cuda_index(device)
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


class Runtime:
    """This process's device, precision and place among the processes of the run.

    Build it with :func:`runtime_for` or :func:`get_runtime`. Training: ``prepare_training`` places (and, with
    several processes, wraps in DDP) the model, then each step runs under ``autocast()``
    and calls ``backward``/``clip_grad_norm_`` here (fp16's loss scaler lives here).
    Checkpoints hold ``unwrap(model).state_dict()``, so they load with any process count.
    """

    def __init__(self, device: str, precision: str, accelerator: Any) -> None:
        self.requested_device, self.precision = device, precision
        self._accelerator = accelerator

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

    @contextlib.contextmanager
    def activated(self) -> Iterator["Runtime"]:
        """Inside the block :func:`current_runtime` is this runtime (e.g. for the validation
        beam search of a training loop that runs in this precision)."""
        _active.append(self)
        try:
            yield self
        finally:
            _active.remove(self)

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

    @contextlib.contextmanager
    def main_process_first(self) -> Iterator[None]:
        """The main process runs the block first (e.g. writes a cache), the others after it (and read it)."""
        with self._accelerator.main_process_first():
            yield

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
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        }


def shard_indices(n: int, processes: int, index: int) -> np.ndarray:
    """Process ``index``'s contiguous block of ``0..n-1`` out of ``processes`` blocks."""
    return np.array_split(np.arange(n, dtype=np.int64), processes)[index]


def _accelerator_mode(device: str, precision: str) -> tuple[str, int | None, str]:
    """What an Accelerate state is built for: fp32 and bf16 share one (bf16 is this module's autocast)."""
    index = _cuda_index(device) if device.startswith("cuda") else None
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
    launcher the first one joins the process group). It does not change the run's runtime.
    fp32 and bf16 runtimes of one device live side by side; another device, or fp16 next
    to fp32/bf16, rebuilds Accelerate's process-wide state, which only a single process may
    do (tests do; the runtimes built before are then dropped)."""
    global _accelerator_key, _run_runtime
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
            _run_runtime = None
        accelerator = _build_accelerator(device, key)
        _accelerator_key = key
    _runtimes[(device, precision)] = Runtime(device, precision, accelerator)
    return _runtimes[(device, precision)]


def get_runtime(device: str = "auto", precision: str = "fp32") -> Runtime:
    """The runtime of ``device`` and ``precision`` (:func:`runtime_for`), made the run's: the
    one :func:`current_runtime` returns outside any :meth:`Runtime.activated` block. The
    runner calls it with the run's options; a single process may switch between runs."""
    global _run_runtime
    _run_runtime = runtime_for(device, precision)
    return _run_runtime


def distributed_runtime() -> Runtime | None:
    """The runtime when the run has several processes (joining their group if nothing has
    yet), None for a single process (then nothing imports torch: score-only methods stay light)."""
    return current_runtime() if launched_processes() > 1 else None


def current_runtime() -> Runtime:
    """The runtime of the innermost :meth:`Runtime.activated` block, else the run's (the
    last :func:`get_runtime`), else the default one (auto, fp32)."""
    if _active:
        return _active[-1]
    return _run_runtime if _run_runtime is not None else get_runtime()
