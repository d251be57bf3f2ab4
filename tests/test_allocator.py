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

_SECOND_ALLOCATION_FAULTS = """
import ctypes, resource
from bench.allocator import hold_freed_memory
state = hold_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20  # above glibc's largest mmap threshold (32 MiB)

def faults_of_one_buffer():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = libc.malloc(size)
    ctypes.memset(buffer, 1, size)
    libc.free(buffer)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_one_buffer()
print(state)
print(faults_of_one_buffer())
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the allocator setting applies to glibc only")


def _second_allocation(choice: str) -> tuple[str, int]:
    environment = {**os.environ, OPT_OUT_VARIABLE: choice}
    environment.pop("GLIBC_TUNABLES", None)
    done = subprocess.run([sys.executable, "-c", _SECOND_ALLOCATION_FAULTS], env=environment,
                          capture_output=True, text=True, check=True)
    state, faults = done.stdout.strip().splitlines()
    return state, int(faults)


@glibc_only
def test_a_held_heap_reuses_a_freed_buffers_pages_and_the_system_default_does_not() -> None:
    pages = (64 << 20) // 4096
    state, faults = _second_allocation("hold")
    assert state == HELD == "glibc malloc: no mmap, trim threshold 1024 MiB"
    assert faults < pages // 20
    state, faults = _second_allocation("system")
    assert state == f"system default ({OPT_OUT_VARIABLE}=system)"
    assert faults > pages // 2


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
