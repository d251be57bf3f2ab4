"""The run's allocator keeps freed memory: a large buffer freed and allocated again is not
faulted back in from the kernel. Each case runs in its own interpreter, since the setting is
process-wide."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from bench.allocator import HELD, OPT_OUT_VARIABLE

_SECOND_ALLOCATION = """
import ctypes, resource
from bench.allocator import hold_freed_memory
state = hold_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20  # above glibc's largest mmap threshold (32 MiB)

class MallInfo(ctypes.Structure):  # glibc's struct mallinfo2: hblkhd, bytes in mmap'd blocks, is the fifth
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc.mallinfo2.restype = MallInfo

def one_buffer():
    before, mapped_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, libc.mallinfo2().hblkhd
    buffer = libc.malloc(size)
    ctypes.memset(buffer, 1, size)
    mapped = libc.mallinfo2().hblkhd - mapped_before
    libc.free(buffer)
    return mapped, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

one_buffer()
print(state)
print(*one_buffer())
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
                                or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                                reason="the allocator setting applies to glibc only (mallinfo2: 2.33 or newer)")


def _second_allocation(choice: str) -> tuple[str, int, int]:
    """What the allocator was, and, for a 64 MiB buffer allocated, written and freed a second
    time: the bytes glibc served by mmap while it lived, and the page faults it cost."""
    environment = {**os.environ, OPT_OUT_VARIABLE: choice}
    environment.pop("GLIBC_TUNABLES", None)
    done = subprocess.run([sys.executable, "-c", _SECOND_ALLOCATION], env=environment,
                          capture_output=True, text=True, check=True)
    state, numbers = done.stdout.strip().splitlines()
    mapped, faults = map(int, numbers.split())
    return state, mapped, faults


@glibc_only
def test_a_held_heap_reuses_a_freed_buffers_pages_and_the_system_default_maps_them_anew() -> None:
    state, mapped, faults = _second_allocation("hold")
    assert state == HELD == "glibc malloc: no mmap, trim threshold 1024 MiB"
    assert mapped == 0 and faults < (64 << 20) // 4096 // 20
    # glibc's default: the buffer is a fresh mapping each time (how many faults that costs
    # depends on the kernel's transparent huge pages, so only the mapping is checked).
    state, mapped, _ = _second_allocation("system")
    assert state == f"system default ({OPT_OUT_VARIABLE}=system)"
    assert mapped >= 64 << 20


def test_an_unknown_allocator_choice_is_a_one_line_error_naming_the_variable() -> None:
    environment = {**os.environ, OPT_OUT_VARIABLE: "jemalloc"}
    done = subprocess.run([sys.executable, "-c", "from bench.allocator import hold_freed_memory; hold_freed_memory()"],
                          env=environment, capture_output=True, text=True)
    assert done.returncode != 0
    assert f"{OPT_OUT_VARIABLE}='jemalloc': expected 'hold' or 'system'" in done.stderr


def test_the_record_names_the_runs_allocator() -> None:
    from bench.allocator import allocator_state
    from bench.runtime import start_runtime

    hardware = start_runtime(None).hardware()
    assert hardware["allocator"] == allocator_state() != "system default"


def test_doctor_says_what_a_runs_allocator_will_be(monkeypatch) -> None:
    from bench import doctor

    monkeypatch.setenv(OPT_OUT_VARIABLE, "system")
    assert f"  allocator of a run: system default ({OPT_OUT_VARIABLE}=system)" in "\n".join(doctor.device_lines())
