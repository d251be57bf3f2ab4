"""Make RecBole 1.2.1 usable from inside the harness, with the smallest possible patches.

RecBole 1.2.1 predates numpy 2 and torch 2.6 and reaches for process-wide state: it
parses ``sys.argv`` while building its config, sets ``CUDA_VISIBLE_DEVICES``, writes
TensorBoard event files under the current directory and logs to the root logger. Every
function here keeps one of those effects inside a run's work folder or undoes it, so the
plugins in ``methods/recbole_baselines.py`` can use RecBole's own models and trainers.
Nothing imports ``recbole.quick_start`` (it pulls in an old ``ray`` that needs
``pkg_resources``). Heavy imports stay inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
# RecBole's Config.compatibility_settings aliases these numpy 1 names; numpy 2 removed them.
_NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}
_patched = False


class _NoSummaryWriter:
    """Stands in for TensorBoard's SummaryWriter, which RecBole's Trainer opens in
    ``./log_tensorboard`` (the current directory, i.e. the repository)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def ensure_compatible() -> None:
    """Restore the numpy 1 aliases RecBole needs and keep its Trainer from opening a
    TensorBoard writer; cheap to call before every use."""
    global _patched
    import numpy as np

    for old_name, new_name in _NUMPY_ALIASES.items():
        if not hasattr(np, old_name):
            setattr(np, old_name, getattr(np, new_name))
    if not _patched:
        import recbole.trainer.trainer as trainer_module

        trainer_module.get_tensorboard = lambda logger: _NoSummaryWriter()
        _patched = True


def make_config(model_name: str, options: dict[str, Any]):
    """A RecBole ``Config`` built from ``options`` alone.

    RecBole reads ``--key=value`` arguments of the running process into its config (so
    ``bench run --seed=1`` would silently change RecBole's seed) and exports
    ``CUDA_VISIBLE_DEVICES``; both are hidden from it / restored here.
    """
    ensure_compatible()
    from recbole.config import Config

    saved_argv = sys.argv
    saved_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    sys.argv = sys.argv[:1]
    try:
        return Config(model=model_name, dataset=options["dataset"], config_dict=options)
    finally:
        sys.argv = saved_argv
        if saved_devices is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved_devices


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint RecBole's Trainer wrote in our work folder.

    torch>=2.6 loads with ``weights_only=True`` by default, which refuses RecBole's
    checkpoints (they pickle its Config object); these files are our own, so full
    unpickling is safe here and only here.
    """
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


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
        return _ANSI_COLOUR.sub("", record.getMessage()).startswith("epoch ")


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _ANSI_COLOUR.sub("", super().format(record))


@contextlib.contextmanager
def recbole_logging(log_file: Path, prefix: str, stream: TextIO | None = None) -> Iterator[None]:
    """Send everything RecBole logs (it uses the root logger) and every warning to
    ``log_file``, and only its one-line-per-epoch summaries to ``stream`` (stderr),
    prefixed with ``prefix``."""
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(message)s"))
    echo_handler = logging.StreamHandler(stream or sys.stderr)
    echo_handler.addFilter(_EpochLinesOnly())
    echo_handler.setFormatter(_PlainFormatter(f"[{prefix}] %(message)s"))
    echo_handler.setLevel(logging.INFO)
    saved_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    root.addHandler(echo_handler)
    # RecBole's pandas and torch deprecation warnings go to the log file, not the terminal.
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(file_handler)
        root.removeHandler(echo_handler)
        root.setLevel(saved_level)
        file_handler.close()
