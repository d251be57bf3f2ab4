"""Progress bars for every long step (tqdm on stderr, so stdout stays parseable)."""

from __future__ import annotations

import sys
from typing import Any, Iterable

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, disable: bool = False, **kwargs: Any) -> tqdm:
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=disable, **kwargs)


def progress_note(message: str, show: bool) -> None:
    """One line between progress bars (e.g. an epoch's result), on stderr when ``show``."""
    if show:
        tqdm.write(message, file=sys.stderr)
