"""The run log: everything to the file (buffered until the work folder is known), only
warnings to a quiet terminal, the error that ended a run recorded in the file."""

from __future__ import annotations

import logging
import warnings

import pytest

from bench.errors import BenchError
from bench.logs import RunLog


def test_quiet_run_shows_warnings_only_and_the_file_gets_everything(tmp_path):
    shown: list[str] = []
    with RunLog(echo=shown.append, quiet=True) as log:
        log("dataset demo: 400 users")
        log("warning: most sequences are in item-ID order")
        logging.getLogger().info("\x1b[1;32mepoch 0 training\x1b[0m [train loss: 3.2]")  # as RecBole logs
        log.to_file(tmp_path / "run.log")
        warnings.warn("a library's deprecation", FutureWarning)
        logging.getLogger("some.library").debug("below INFO: not kept")
    assert shown == ["warning: most sequences are in item-ID order"]
    text = (tmp_path / "run.log").read_text()
    for line in ("dataset demo: 400 users", "warning: most sequences", "epoch 0 training [train loss: 3.2]",
                 "FutureWarning: a library's deprecation"):
        assert line in text
    assert "\x1b[" not in text and "below INFO" not in text
    # Nothing is left attached once the run is over.
    logging.getLogger().info("after the run")
    assert "after the run" not in (tmp_path / "run.log").read_text()


def test_normal_run_shows_every_message(tmp_path):
    shown: list[str] = []
    with RunLog(echo=shown.append, quiet=False) as log:
        log.to_file(tmp_path / "run.log")
        log("dataset demo: 400 users")
    assert shown == ["dataset demo: 400 users"]


@pytest.mark.parametrize("error, expected", [
    (BenchError("config key 'epochs' must be at least 1, got -1"), "error: config key 'epochs'"),
    (ZeroDivisionError("a bug"), "ZeroDivisionError: a bug"),  # a bug keeps its traceback, in the file
])
def test_the_error_that_ends_a_run_is_in_its_log(tmp_path, error, expected):
    with pytest.raises(type(error)) as raised:
        with RunLog(echo=lambda message: None, quiet=True) as log:
            log.to_file(tmp_path / "run.log")
            raise error
    assert expected in (tmp_path / "run.log").read_text()
    assert raised.value.run_log_file == tmp_path / "run.log"


def test_a_resumed_run_appends_to_the_log(tmp_path):
    for attempt in ("first", "second"):
        with RunLog(echo=lambda message: None, quiet=True) as log:
            log.to_file(tmp_path / "run.log")
            log(f"{attempt} attempt")
    text = (tmp_path / "run.log").read_text()
    assert text.index("first attempt") < text.index("second attempt")
