"""Make RecBole 1.2.1 usable from inside the harness, with the smallest possible patches.

RecBole 1.2.1 predates numpy 2 and torch 2.6 and reaches for process-wide state: it
parses ``sys.argv`` while building its config, sets ``CUDA_VISIBLE_DEVICES``, writes
TensorBoard event files under the current directory and logs to the root logger. Every
function here keeps one of those effects inside a run's work folder or undoes it, so the
plugins in ``methods/recbole_baselines.py`` can use RecBole's own models and trainers.
Nothing imports ``recbole.quick_start`` (it pulls in an old ``ray`` that needs
``pkg_resources``). Heavy imports stay inside the functions.

RecBole's own resume is not exact (RecBole#2126): its Trainer writes a checkpoint only when
validation improves, without any random state, and its dataloaders seed their own shuffling
generator afresh when built, so a resumed run repeats epochs from the best weights instead of
the last ones and reshuffles as in epoch 0. :class:`ExactResume` keeps the whole state instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TextIO

import numpy as np

from bench.logs import PlainFormatter, strip_colour
from bench.run_guard import checkpoint_writing
from bench.shared_artifacts import atomic_save

if TYPE_CHECKING:
    import torch

# RecBole's Config.compatibility_settings aliases these numpy 1 names; numpy 2 removed them.
_NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}
_patched = False


class _NoSummaryWriter:
    """Stands in for TensorBoard's SummaryWriter, which RecBole's Trainer opens in
    ``./log_tensorboard`` (the current directory, i.e. the repository)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def ensure_compatible() -> None:
    """Restore the numpy 1 aliases RecBole needs, keep its Trainer from opening a
    TensorBoard writer and undo the autograd anomaly detection its sequential models' package
    switches on for the whole process when imported (``sine.py``: every backward pass then
    records tracebacks and checks for NaNs, which changes no value and cost SETRec's step
    more than twice its time after its CF tokenizer had trained in the same process); cheap to
    call before every use."""
    global _patched
    for old_name, new_name in _NUMPY_ALIASES.items():
        if not hasattr(np, old_name):
            setattr(np, old_name, getattr(np, new_name))
    if not _patched:
        import recbole.model.sequential_recommender  # noqa: F401 (its import switches the detection on)
        import recbole.trainer.trainer as trainer_module
        import torch

        torch.autograd.set_detect_anomaly(False)
        trainer_module.get_tensorboard = lambda logger: _NoSummaryWriter()
        _patched = True


def make_config(model_name: str, options: dict[str, Any], device: "torch.device | None" = None):
    """A RecBole ``Config`` built from ``options`` alone, training on ``device``.

    RecBole reads ``--key=value`` arguments of the running process into its config (so
    ``bench run --seed=1`` would silently change RecBole's seed) and exports
    ``CUDA_VISIBLE_DEVICES``; both are hidden from it / restored here. With the variable
    restored, RecBole's own choice (``cuda``, i.e. the first visible GPU, or ``cpu`` without
    a ``gpu_id``) is replaced by ``device``, the one the harness's runtime resolved.
    """
    ensure_compatible()
    from recbole.config import Config

    saved_argv = sys.argv
    saved_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    sys.argv = sys.argv[:1]
    try:
        config = Config(model=model_name, dataset=options["dataset"], config_dict=options)
    finally:
        sys.argv = saved_argv
        if saved_devices is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved_devices
    if device is not None:
        config["device"] = device
    return config


def device_options(device: "torch.device", precision: str) -> dict[str, Any]:
    """RecBole 1.2.1's own switches for a device and a precision.

    ``gpu_id`` empty means CPU to RecBole (it has no MPS path: :func:`make_config` sets the
    device afterwards); no ``local_rank``/``nproc``, so its DDP stays off. Its Trainer runs
    each batch's loss under ``torch.autocast(enabled=enable_amp)`` and, on CUDA, through a
    GradScaler when ``enable_scaler``: bf16 and fp16 are that switch, with the autocast dtype
    set by :func:`autocast_dtype`.
    """
    return {"use_gpu": device.type == "cuda", "gpu_id": str(device.index or 0) if device.type == "cuda" else "",
            "enable_amp": precision != "fp32", "enable_scaler": precision == "fp16"}


@contextlib.contextmanager
def autocast_dtype(device: "torch.device", precision: str) -> Iterator[None]:
    """Within the block, autocast on ``device`` computes in ``precision``'s dtype.

    RecBole's Trainer opens ``torch.autocast`` without a dtype, which means float16 on CUDA
    and bfloat16 on CPU; the process-wide default is set to the chosen one and restored.
    """
    import torch

    if precision == "fp32":
        yield
        return
    saved = torch.get_autocast_dtype(device.type)
    torch.set_autocast_dtype(device.type, {"bf16": torch.bfloat16, "fp16": torch.float16}[precision])
    try:
        yield
    finally:
        torch.set_autocast_dtype(device.type, saved)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint RecBole's Trainer wrote in our work folder.

    torch>=2.6 loads with ``weights_only=True`` by default, which refuses RecBole's
    checkpoints (they pickle its Config object); these files are our own, so full
    unpickling is safe here and only here.
    """
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def save_atomically(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` that leaves either the whole new file or the old one, never a part."""
    import torch

    atomic_save(Path(path), lambda stream: torch.save(state, stream, pickle_protocol=4))


def random_states(loaders: Sequence[Any]) -> dict[str, Any]:
    """Every random state RecBole training draws from: Python's (BERT4Rec's masking, S3Rec),
    numpy's (negative sampling), torch's (dropout, initialisation) and each dataloader's own
    shuffling generator."""
    import torch

    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
              "loaders": [loader.generator.get_state() for loader in loaders]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def restore_random_states(states: dict[str, Any], loaders: Sequence[Any]) -> None:
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    for loader, state in zip(loaders, states["loaders"], strict=True):
        loader.generator.set_state(state)
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states:
        torch.mps.set_rng_state(states["mps"])


class ExactResume:
    """Makes one RecBole ``Trainer`` resume to the result an uninterrupted run gives.

    At the start of every epoch after the first one this process trains, ``state_file``
    receives the state the previous epoch left (validation and early stopping included):
    model, optimizer (RecBole's Trainer has no scheduler), epoch counter, early-stopping
    state (best score, validations without improvement), the best validation result, the
    per-epoch losses, every random state and the harness's own counters (``harness_state``).
    The best checkpoint RecBole writes is made atomic too. Both files are written whole or not
    at all, so a kill at any moment leaves a state to resume from; the epochs after it are
    trained again from the same weights, data order and random draws.
    """

    def __init__(self, trainer: Any, state_file: Path, fingerprint: str, loaders: Sequence[Any],
                 harness_state: Callable[[], dict[str, Any]]) -> None:
        self.trainer, self.state_file, self.fingerprint = trainer, Path(state_file), fingerprint
        self.loaders, self.harness_state = loaders, harness_state
        self._write_best_checkpoint_atomically()

    def restore(self) -> dict[str, Any] | None:
        """Load the saved state into the trainer and the random generators; returns the
        harness's counters saved with it, or None when there is no state of this run."""
        if not self.state_file.is_file():
            return None
        state = load_checkpoint(self.state_file)
        if state.get("fingerprint") != self.fingerprint:
            return None
        trainer = self.trainer
        trainer.model.load_state_dict(state["model"])
        trainer.model.load_other_parameter(state["other_parameter"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.start_epoch = state["next_epoch"]
        trainer.cur_step = state["cur_step"]
        trainer.best_valid_score = state["best_valid_score"]
        trainer.best_valid_result = state["best_valid_result"]
        trainer.train_loss_dict = dict(state["train_loss_dict"])
        # Last, so nothing drawn while the run was rebuilt shifts the generators.
        restore_random_states(state["random"], self.loaders)
        logging.getLogger().info(f"resuming from {self.state_file} before epoch {trainer.start_epoch}")
        return state["harness"]

    def save_each_epoch(self) -> None:
        """From now on, save the state at the start of each epoch after the first."""
        trainer = self.trainer
        train_epoch, first_epoch = trainer._train_epoch, trainer.start_epoch

        def save_then_train(train_data, epoch_idx, *args, **kwargs):
            if epoch_idx > first_epoch:
                self.save(epoch_idx)
            return train_epoch(train_data, epoch_idx, *args, **kwargs)

        trainer._train_epoch = save_then_train

    def save(self, next_epoch: int) -> None:
        trainer = self.trainer
        with checkpoint_writing(next_epoch, trainer.epochs):  # a stop signal waits for a whole state file
            self._save(next_epoch)

    def _save(self, next_epoch: int) -> None:
        trainer = self.trainer
        save_atomically({
            "fingerprint": self.fingerprint, "next_epoch": next_epoch, "cur_step": trainer.cur_step,
            "best_valid_score": trainer.best_valid_score, "best_valid_result": trainer.best_valid_result,
            "train_loss_dict": dict(trainer.train_loss_dict), "model": trainer.model.state_dict(),
            "other_parameter": trainer.model.other_parameter(), "optimizer": trainer.optimizer.state_dict(),
            "random": random_states(self.loaders), "harness": self.harness_state(),
        }, self.state_file)

    def _write_best_checkpoint_atomically(self) -> None:
        trainer = self.trainer
        save_checkpoint = trainer._save_checkpoint

        def save_whole(epoch, verbose=True, **kwargs):
            target = Path(kwargs.pop("saved_model_file", trainer.saved_model_file))
            _whole_file(lambda path: save_checkpoint(epoch, verbose=False, saved_model_file=path, **kwargs), target)
            if verbose:
                logging.getLogger().info(f"best checkpoint so far (epoch {epoch}): {target}")

        trainer._save_checkpoint = save_whole


def write_pretrained_model_atomically(trainer: Any) -> None:
    """S3Rec's pre-trained model (``PretrainTrainer.save_pretrained_model``) is written whole
    or not at all: a resumed run takes an existing file as finished pre-training."""
    save_pretrained_model = trainer.save_pretrained_model

    def save_whole(epoch, saved_model_file):
        _whole_file(lambda path: save_pretrained_model(epoch, path), Path(saved_model_file))
        trainer.saved_model_file = saved_model_file

    trainer.save_pretrained_model = save_whole


def _whole_file(save: Callable[[str], None], target: Path) -> None:
    """``save(path)`` into a partial file beside ``target``, then moved into place in one step."""
    partial = target.with_name(f".{target.name}.partial")
    save(str(partial))
    os.replace(partial, target)


@contextlib.contextmanager
def trusted_checkpoints(directory: Path) -> Iterator[None]:
    """Within the block, ``torch.load`` of a file under ``directory`` unpickles fully.

    For RecBole code that calls ``torch.load`` itself (``Trainer.resume_checkpoint``,
    S3Rec's fine-tuning stage reading its pre-trained model); any other file keeps
    torch's default.
    """
    import torch

    original_load = torch.load
    root = Path(directory).resolve()

    def load(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve().is_relative_to(root):
            kwargs.setdefault("weights_only", False)
        return original_load(file, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original_load


@contextlib.contextmanager
def elementwise_series_len() -> Iterator[None]:
    """Within the block, ``Series.agg(len)`` gives each element's length, as in pandas 2.

    RecBole's dataset builder measures its token sequences (item categories) with
    ``Series.agg(len)``; pandas 3 returns the length of the Series instead, which breaks
    the remapping of every ``token_seq`` field. Any other ``agg`` call is untouched.
    """
    import pandas as pd

    original_agg = pd.Series.agg

    def agg(self, func=None, *args, **kwargs):
        if func is len and not args and not kwargs:
            return self.map(len)
        return original_agg(self, func, *args, **kwargs)

    pd.Series.agg = agg
    try:
        yield
    finally:
        pd.Series.agg = original_agg


class _EpochLinesOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return strip_colour(record.getMessage()).startswith("epoch ")


@contextlib.contextmanager
def recbole_logging(prefix: str, echo: bool, stream: TextIO | None = None) -> Iterator[None]:
    """Let RecBole's INFO records (it logs to the root logger) reach the root's handlers, the
    run log file (:mod:`bench.logs`); with ``echo``, also show its one-line-per-epoch
    summaries on ``stream`` (stderr), prefixed with ``prefix``."""
    root = logging.getLogger()
    echo_handler = logging.StreamHandler(stream or sys.stderr)
    echo_handler.addFilter(_EpochLinesOnly())
    echo_handler.setFormatter(PlainFormatter(f"[{prefix}] %(message)s"))
    echo_handler.setLevel(logging.INFO)
    saved_level = root.level
    root.setLevel(logging.INFO)
    if echo:
        root.addHandler(echo_handler)
    try:
        yield
    finally:
        root.removeHandler(echo_handler)
        root.setLevel(saved_level)
