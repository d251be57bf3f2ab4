"""The C allocator of a run's process: freed memory kept for the next step.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and gives it back to the kernel with ``munmap`` when freed. A training step that
allocates the same large buffers every step (a batch's logits over all items, their
gradients) therefore page-faults every one of their pages back in at every step: the kernel
zeroes each 4 KiB page again. A RecBole SASRec with cross-entropy over all Toys items spent
more CPU time in the kernel than in its own code that way.

:func:`hold_freed_memory` turns that off for the process: no block is served by ``mmap``
(``M_MMAP_MAX`` = 0), and up to ``HOLD_BYTES`` of free memory at the top of the heap is kept
instead of trimmed (``M_TRIM_THRESHOLD``), so a step reuses the pages the previous one freed.
It changes where memory comes from, not what is computed; the price is a resident size closer
to the peak for the life of the process. The runtime applies it once per run
(:func:`bench.runtime.start_runtime`) and the record's ``hardware`` says what it did.
``GENREC_BENCH_ALLOCATOR=system`` leaves the allocator as the C library has it.
"""

from __future__ import annotations

import ctypes
import os
import platform

OPT_OUT_VARIABLE = "GENREC_BENCH_ALLOCATOR"
HOLD_BYTES = 1 << 30
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
_M_MMAP_MAX = -4

HELD = f"glibc malloc: no mmap, trim threshold {HOLD_BYTES >> 20} MiB"

_state: str | None = None  # what this process's allocator is, once decided


def hold_freed_memory() -> str:
    """Keep freed memory in this process's heap (glibc only; once per process); returns what
    the allocator now is, as the record says it."""
    global _state
    if _state is None:
        _state = planned_allocator()
        if _state == HELD:
            libc = ctypes.CDLL(None)
            if not (libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, HOLD_BYTES) == 1):
                _state = "system default (glibc refused mallopt)"
    return _state


def planned_allocator() -> str:
    """What :func:`hold_freed_memory` makes of the allocator in this environment (nothing applied)."""
    choice = os.environ.get(OPT_OUT_VARIABLE, "hold")
    if choice not in ("hold", "system"):
        from bench.errors import BenchError

        raise BenchError(f"environment variable {OPT_OUT_VARIABLE}={choice!r}: expected 'hold' or 'system'")
    if choice == "system":
        return f"system default ({OPT_OUT_VARIABLE}=system)"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system default (not glibc)"
    return HELD


def allocator_state() -> str:
    """What this process's allocator is (``"system default"`` before :func:`hold_freed_memory`)."""
    return _state or "system default"
