"""Paths in a run record that mean the same on every machine.

A record is committed and read on other machines, so it never keeps this machine's absolute
paths: a path under the cache folder is written ``$GENREC_BENCH_CACHE/...``, a path beside the
project (its data folders, ``../shared/data/...``) relative to the project root, as a user
passes ``--data-dir``; any other path (a user's own folder elsewhere) stays as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CACHE_VARIABLE = "$GENREC_BENCH_CACHE"


def portable_path(text: str, project_root: Path, cache: Path) -> str:
    """``text`` rewritten as above when it is an absolute path under ``cache`` or beside
    ``project_root``; any other string unchanged."""
    if not text.startswith("/"):
        return text
    path = Path(text)
    for root in (cache.resolve(), Path(os.path.abspath(cache))):  # the cache as given, and behind links
        if path.is_relative_to(root):
            relative = path.relative_to(root).as_posix()
            return CACHE_VARIABLE if relative == "." else f"{CACHE_VARIABLE}/{relative}"
    project = project_root.resolve()
    if path.is_relative_to(project.parent):
        return os.path.relpath(path, project)
    return text


def portable(value: Any, project_root: Path, cache: Path) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every path made portable."""
    if isinstance(value, str):
        return portable_path(value, project_root, cache)
    if isinstance(value, dict):
        return {key: portable(item, project_root, cache) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item, project_root, cache) for item in value]
    return value


def local_path(text: str, cache: Path | None = None) -> Path:
    """A path as a record writes it, on this machine: ``$GENREC_BENCH_CACHE/...`` under the
    cache folder (``cache``, by default this process's), a relative path under the project root
    (e.g. to open a record's ``log_file`` or ``tracker_folder``)."""
    from bench.data.prepare import PROJECT_ROOT, cache_root

    if text == CACHE_VARIABLE or text.startswith(CACHE_VARIABLE + "/"):
        return (cache or cache_root()) / text[len(CACHE_VARIABLE):].lstrip("/")
    path = Path(text)
    return path if path.is_absolute() else PROJECT_ROOT / path
