"""The run log: everything a run says goes to one file in its work folder, the terminal gets
only what the user asked for.

The file holds the harness's own messages, every record of the root logger (RecBole logs
there: its config, per-epoch losses and validation results; so does the engine's training
loop: one line per epoch with its loss, validation and best epoch) and Python warnings, plus
the error that ended a failed run. On the terminal, a normal run shows the harness's messages
(and one line per epoch, RecBole's or the engine's, see :func:`bench.recbole_compat.recbole_logging`); under
``--quiet`` only ``warning:`` lines reach stderr, and stdout holds the result table and the
record path alone.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import TracebackType
from typing import Callable

from bench.errors import BenchError
from bench.run_guard import RunStopped

RUN_LOG_FILE = "run.log"
LOGGER = "bench.run"
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def strip_colour(text: str) -> str:
    """``text`` without terminal colour codes (RecBole colours its log lines)."""
    return _ANSI_COLOUR.sub("", text)


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return strip_colour(super().format(record))


class _Buffer(logging.Handler):
    """Keeps records until the run's work folder (and so its log file) is known."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class RunLog:
    """A context manager for one run; calling it logs one harness message.

    Records are buffered until :meth:`to_file` names the file (the work folder depends on the
    prepared data), then written there; the file is appended to, so a resumed run's log
    follows the killed one's.
    """

    def __init__(self, echo: Callable[[str], None], quiet: bool) -> None:
        self.echo, self.quiet = echo, quiet
        self.path: Path | None = None
        self._root = logging.getLogger()
        self._logger = logging.getLogger(LOGGER)
        self._handler: logging.Handler = _Buffer()
        self._saved_level = self._root.level

    def __call__(self, message: str) -> None:
        self._logger.info(message)
        if not self.quiet or message.startswith("warning:"):
            self.echo(message)

    def __enter__(self) -> "RunLog":
        self._root.addHandler(self._handler)
        self._root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        return self

    def to_file(self, path: Path) -> None:
        """From now on, and for what was said so far, write to ``path``."""
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        file_handler.setLevel(logging.INFO)
        self._root.removeHandler(self._handler)
        for record in getattr(self._handler, "records", []):
            file_handler.handle(record)
        self._handler, self.path = file_handler, Path(path)
        self._root.addHandler(file_handler)
        self._logger.info(f"run log of {self.path.parent.name} (a resumed run appends here)")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is not None and self.path is not None:
            if isinstance(error, BenchError):
                self._logger.error(f"error: {error}")
            elif isinstance(error, RunStopped):
                self._logger.warning(error.message())
            else:
                self._logger.error("the run failed", exc_info=(kind, error, traceback))
            # Whoever catches the error (a sweep's summary) can point to the whole story.
            error.run_log_file = self.path  # type: ignore[attr-defined]
        logging.captureWarnings(False)
        self._root.removeHandler(self._handler)
        self._root.setLevel(self._saved_level)
        self._handler.close()
