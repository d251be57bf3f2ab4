"""``bench run ... --processes N``: start the same command in N processes through torch's launcher.

The processes are the ones ``torchrun --standalone --nproc_per_node N -m bench.cli run ...``
would start (torch's elastic agent, in this process): one per GPU on a GPU machine, N CPU
processes on gloo otherwise. Started any other way (``torchrun``, ``accelerate launch``, a
SLURM script), ``bench run`` reads ``WORLD_SIZE``/``RANK`` from the environment and behaves
the same; :mod:`bench.runtime` owns everything after the start.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from typing import TYPE_CHECKING, Sequence

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.method import Method


def check_process_count(requested: int) -> None:
    """``--processes`` must agree with a launcher that already started this process."""
    from bench.devices import launched_processes

    launched = launched_processes()
    if launched > 1 and requested not in (1, launched):
        raise BenchError(f"--processes {requested} disagrees with the launcher, which started {launched} "
                         "processes (WORLD_SIZE); drop --processes when starting through torchrun or accelerate")


def check_method_processes(method_class: type[Method], method_name: str, processes: int) -> None:
    """Refuse several processes for a method that runs in one only, before any is started
    (the runner refuses the same in each process, for runs started by another launcher)."""
    if processes > 1 and not method_class.supports_processes:
        raise BenchError(f"method '{method_name}' runs in one process only; run it without --processes "
                         f"(this run has {processes}; see docs/gpu.md)")


def needs_launch(requested: int) -> bool:
    from bench.devices import launched_processes

    return requested > 1 and launched_processes() == 1


def launch(processes: int, arguments: Sequence[str]) -> None:
    """Run ``python -m bench.cli <arguments>`` in ``processes`` processes and wait for them;
    BenchError when one fails (its own ``error:`` line is above)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # The agent logs each failed child with a traceback pointer; the error line below says it.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # As torchrun does: N processes sharing the cores would each start one thread per core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # a free local port
                          max_restarts=0, monitor_interval=0.5)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "bench.cli", *arguments)
    except SignalException as stop:
        # The agent passed the signal on to every process and waited for them; the main one
        # said where it stopped. Exit as they did (bench.run_guard).
        raise SystemExit(128 + int(stop.sigval)) from None
    except ChildFailedError as error:
        rank, failure = min(error.failures.items())
        raise BenchError(f"process {rank} of {processes} stopped with exit code {failure.exitcode} "
                         "(its message is above); the other processes were stopped") from None
