"""Loading a pre-trained checkpoint by name: the local Hugging Face cache first, the hub only
when it is allowed and answers.

A compute node without network would otherwise sit through the hub client's retries (five per
file, about 23 s each, for every file a loader looks for: more than ten minutes for a
sentence-transformers model) before failing. Here it fails in seconds, saying what is missing
and how to provide it. A name found in the cache loads from it without a network request.
"""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

from bench.errors import BenchError

T = TypeVar("T")
PROBE_TIMEOUT_SECONDS = 5.0


def hub_offline() -> bool:
    """True when the environment tells the Hugging Face libraries not to reach the hub."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
                                           for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@functools.lru_cache(maxsize=None)
def hub_reachable(endpoint: str) -> bool:
    """One request to the hub, no retries: does anything answer? (An HTTP error status is an
    answer.) Asked once per process and endpoint."""
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=PROBE_TIMEOUT_SECONDS):
            pass
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def load_cached_or_hub(load: Callable[[bool], T], name: str, what: str, offline: bool | None = None) -> T:
    """``load(local_files_only)`` from the local cache; failing that, from the hub unless
    ``offline`` (None: unless the environment sets HF_HUB_OFFLINE) or the hub does not answer.
    ``what`` names the thing in the error (e.g. "tokenizer of checkpoint"). A ``name`` that is a
    local folder is loaded from it, never looked for in the cache or on the hub."""
    try:
        return load(True)
    except Exception as error:  # the loaders raise many types; all mean "not usable from the cache"
        local = _first_line(error)
    if Path(name).expanduser().is_dir():
        raise BenchError(f"{what} '{name}': the local folder cannot be loaded: {local}")
    help_text = (f"download it where the hub is reachable (`hf download {name}`) into the Hugging Face cache "
                 "this machine reads (HF_HOME), or give a local folder instead of the name; or use --profile cpu")
    if offline:
        raise BenchError(f"{what} '{name}' is not in the local Hugging Face cache: {help_text} (cache: {local})")
    if offline is None and hub_offline():
        raise BenchError(f"{what} '{name}' is not in the local Hugging Face cache and the hub is off "
                         f"(HF_HUB_OFFLINE): {help_text} (cache: {local})")
    endpoint = hub_endpoint()
    if not hub_reachable(endpoint):
        raise BenchError(f"{what} '{name}' is not in the local Hugging Face cache and the hub ({endpoint}) "
                         f"does not answer: {help_text} (cache: {local})")
    try:
        return load(False)
    except Exception as error:
        raise BenchError(f"{what} '{name}' cannot be loaded from the hub ({endpoint}): {_first_line(error)}") from None
