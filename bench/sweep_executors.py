"""Where the runs of a sweep execute: local worker processes, or SLURM jobs through submitit.

Both call :func:`run_task`, which runs one grid point through :func:`bench.runner.execute`
(the runner of ``bench run``) with the worker's thread budget, its whole output going to the
run's log file; a SLURM job calls it through :class:`bench.sweep_requeue.RequeueableRun`, so that
a preempted or timed-out job is requeued and resumes. This module is imported by every worker process, so it imports nothing heavy
at the top: thread limits must be set before numpy or torch load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Iterator, Sequence, TextIO

from bench.errors import BenchError
from bench.identity import record_identity
from bench.run_guard import RunStopped
from bench.sweep import RunOutcome, RunTask, SlurmOptions, SweepPlan, thread_note
from bench.sweep_requeue import RequeueableRun

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def limit_threads(threads: int) -> int:
    """Hold this process to ``threads`` CPU threads (BLAS, OpenMP and torch's intra-op pool);
    returns torch's thread count after the change."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


@contextlib.contextmanager
def _thread_environment(threads: int) -> Iterator[None]:
    """A child started inside this block inherits the thread limits before it imports numpy."""
    saved = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    os.environ.update({variable: str(threads) for variable in THREAD_VARIABLES})
    try:
        yield
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


@contextlib.contextmanager
def _output_to(log_path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (C-level writes included, e.g. RecBole's) to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_task(task: RunTask, threads: int) -> RunOutcome:
    """Run one grid point in this process; never raises for a failed run (the outcome says so)."""
    log_path = Path(task.log_path)
    clock = time.monotonic()
    record: str | None = None
    error: str | None = None
    with _output_to(log_path):
        print(f"=== {task.label}: attempt started {dt.datetime.now():%Y-%m-%d %H:%M:%S}, "
              f"{threads} thread(s)", flush=True)
        try:
            print(f"torch threads: {limit_threads(threads)}", flush=True)
            record = _launched(task) if task.processes > 1 else _in_process(task)
            print(f"record: {record}", flush=True)
        except BenchError as failure:
            error = f"error: {failure}"
            print(error, flush=True)
        except Exception as failure:  # a bug in a method must not stop the other runs
            traceback.print_exc()
            error = f"{type(failure).__name__}: {failure}".splitlines()[0]
    return RunOutcome(identity=task.identity, label=task.label, status="failed" if error else "finished",
                      record=record, error=error, log_path=str(log_path), seconds=time.monotonic() - clock)


def _in_process(task: RunTask) -> str:
    from bench.runner import execute

    return str(execute(task.request(), log=lambda message: print(message, flush=True)))


def _launched(task: RunTask) -> str:
    """A multi-GPU run: the engine's launcher starts ``bench run`` in ``task.processes`` processes;
    the record is then found in the store by the run's identity."""
    from bench.launch import launch
    from bench.results import all_records

    launch(task.processes, task.run_arguments())
    folder = Path(task.results_dir) / task.dataset / task.method
    matches = [r for r in all_records(folder) if record_identity(r) == task.identity] if folder.exists() else []
    if not matches:
        raise BenchError(f"the launched run wrote no record with this run's identity under {folder}")
    return max(matches, key=lambda r: r["started_at"])["_path"]


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """SIGTERM ends this process as Ctrl-C does, through ``finally`` blocks (exit code 143)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signal_number: int, frame: object) -> None:
        raise SystemExit(128 + signal_number)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker_main(task: RunTask, threads: int, connection) -> None:
    try:
        connection.send(run_task(task, threads))
    except RunStopped as stop:  # the sweep was stopped: say so in the run's log, as `bench run` does
        with _output_to(Path(task.log_path)):
            print(stop.message(), flush=True)
        raise SystemExit(stop.exit_code) from None
    connection.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """One line for the whole grid: done, running, failed, ETA. Redrawn in place on a terminal,
    printed once per change otherwise (logs of batch jobs stay short)."""

    def __init__(self, total: int, already_done: int, slots: int, running_word: str = "running",
                 stream: TextIO | None = None) -> None:
        self.total, self.done, self.failed = total, already_done, 0
        self.slots, self.running_word = max(1, slots), running_word
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.running: dict[str, float] = {}
        self.durations: list[float] = []
        self._shown = ""

    def started(self, task: RunTask) -> None:
        self.running[task.identity] = time.monotonic()
        self.show()

    def finished(self, outcome: RunOutcome) -> None:
        self.running.pop(outcome.identity, None)
        if outcome.status == "finished":
            self.done += 1
        else:
            self.failed += 1
        self.durations.append(outcome.seconds)
        self.show()

    def eta(self) -> str:
        queued = self.total - self.done - self.failed - len(self.running)
        if not queued and not self.running:
            return "0s"
        if not self.durations:
            return "?"
        mean = sum(self.durations) / len(self.durations)
        now = time.monotonic()
        work = queued * mean + sum(max(0.0, mean - (now - start)) for start in self.running.values())
        return _duration(work / min(self.slots, queued + len(self.running)))

    def line(self) -> str:
        return (f"sweep: {self.done}/{self.total} done, {len(self.running)} {self.running_word}, "
                f"{self.failed} failed, ETA {self.eta()}")

    def show(self) -> None:
        line = self.line()
        if self.interactive:
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
        elif line.rsplit(", ETA", 1)[0] != self._shown.rsplit(", ETA", 1)[0]:
            self.stream.write(line + "\n")
            self.stream.flush()
        self._shown = line

    def tick(self) -> None:
        if self.interactive:
            self.show()

    def close(self) -> None:
        self.show()
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def run_sweep(plan: SweepPlan, executor: LocalExecutor | SubmititExecutor, echo=print) -> list[RunOutcome]:
    """Run what is left to do; a failed run does not stop the others."""
    todo = plan.todo
    progress = Progress(total=len(plan.tasks), already_done=len(plan.tasks) - len(todo),
                        slots=executor.slots, running_word=executor.running_word)
    for note in thread_note(plan, executor.threads_per_run):
        echo(note)
    if not todo:
        progress.close()
        return []
    try:
        return executor.run(todo, progress)
    finally:
        progress.close()


class LocalExecutor:
    """``jobs`` worker processes at a time on this machine, the cores split evenly between them."""

    running_word = "running"

    def __init__(self, jobs: int, cores: int | None = None, cores_per_run: int | None = None) -> None:
        if jobs < 1:
            raise BenchError(f"--jobs must be at least 1, got {jobs}")
        if cores_per_run is not None and cores_per_run < 1:
            raise BenchError(f"--cpus-per-job must be at least 1, got {cores_per_run}")
        self.slots = jobs
        # A sweep beside other work (another sweep, a run) says how many cores each of its runs gets.
        self.threads_per_run = cores_per_run or max(1, (cores or available_cores()) // jobs)

    def run(self, tasks: Sequence[RunTask], progress: Progress) -> list[RunOutcome]:
        import multiprocessing
        from multiprocessing.connection import wait

        # A fresh interpreter per run: no state leaks between runs, and a run that crashes the
        # interpreter (or is killed for memory) fails alone.
        context = multiprocessing.get_context("spawn")
        queue = list(tasks)
        active: dict[int, tuple] = {}
        finishing: list = []  # processes that reported and are tearing down (can take a while)
        outcomes: list[RunOutcome] = []
        with _exit_on_sigterm():
            try:
                while queue or active:
                    while queue and len(active) < self.slots:
                        task = queue.pop(0)
                        receiver, sender = context.Pipe(duplex=False)
                        arguments = (task, self.threads_per_run, sender)
                        process = context.Process(target=_worker_main, args=arguments)
                        with _thread_environment(self.threads_per_run):
                            process.start()
                        sender.close()
                        active[process.sentinel] = (process, receiver, task, time.monotonic())
                        progress.started(task)
                    # A run is over when its outcome arrives or its process ends without one (a crash).
                    ready = set(wait([entry[1] for entry in active.values()] + list(active), timeout=1.0))
                    for sentinel in [s for s, entry in active.items() if s in ready or entry[1] in ready]:
                        process, receiver, task, started = active.pop(sentinel)
                        outcome = self._collect(process, receiver, task, started)
                        finishing.append(process)
                        outcomes.append(outcome)
                        progress.finished(outcome)
                    finishing = [process for process in finishing if process.is_alive()]
                    progress.tick()
                for process in finishing:
                    process.join(timeout=60)
            finally:
                # Stopped (Ctrl-C, or SIGTERM: kill, a scheduler's stop) or failed: each run still going
                # gets SIGTERM, stops at its next safe point with its last checkpoint whole, and is
                # waited for, so no run outlives its sweep and the same command resumes them.
                for process in [entry[0] for entry in active.values()] + finishing:
                    if process.is_alive():
                        process.terminate()
                        process.join()
        return outcomes

    @staticmethod
    def _collect(process, receiver, task: RunTask, started: float) -> RunOutcome:
        outcome = None
        try:
            if receiver.poll():
                outcome = receiver.recv()
        except EOFError:
            pass
        if outcome is None:
            process.join()
            outcome = RunOutcome(identity=task.identity, label=task.label, status="failed", record=None,
                                 error=f"worker process exited with code {process.exitcode} before reporting "
                                       "(killed, or out of memory?)",
                                 log_path=task.log_path, seconds=time.monotonic() - started)
        return outcome


class SubmititExecutor:
    """One SLURM job per run, submitted as one job array through submitit; each job is requeued
    when preempted or near its time limit, and resumes (:mod:`bench.sweep_requeue`).
    ``cluster="local"`` runs the same path on this machine with submitit's local executor (tests,
    dry runs)."""

    running_word = "queued or running"

    def __init__(self, options: SlurmOptions, folder: Path, cluster: str = "slurm", poll_seconds: float = 15.0,
                 job_name: str = "bench-sweep") -> None:
        self.options, self.folder, self.cluster = options, Path(folder), cluster
        self.poll_seconds, self.job_name = poll_seconds, job_name
        self.slots = options.max_parallel or 1_000_000
        self.threads_per_run = options.cpus_per_job

    def parameters(self) -> dict:
        options = self.options
        parameters = {"name": self.job_name, "timeout_min": options.time_minutes, "nodes": 1, "tasks_per_node": 1,
                      "cpus_per_task": options.cpus_per_job, "mem_gb": options.mem_gb,
                      "gpus_per_node": options.gpus_per_job}
        slurm = {"partition": options.partition, "account": options.account,
                 "array_parallelism": options.max_parallel or None, "setup": list(options.setup) or None,
                 "signal_delay_s": options.signal_delay_s,
                 "additional_parameters": {"requeue": True} if options.requeue else None}
        parameters.update({f"slurm_{key}": value for key, value in slurm.items() if value is not None})
        return parameters

    def submitit_executor(self):
        """submitit's executor with this sweep's resources (``submitit.AutoExecutor``)."""
        import submitit

        timeouts = self.options.max_timeouts
        executor = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=self.cluster,
                                         slurm_max_num_timeout=timeouts, local_max_num_timeout=timeouts)
        executor.update_parameters(**self.parameters())
        return executor

    def run(self, tasks: Sequence[RunTask], progress: Progress) -> list[RunOutcome]:
        executor = self.submitit_executor()
        # Several GPUs per job: one process per GPU, through the engine's launcher (bench/launch.py).
        processes = max(1, self.options.gpus_per_job)
        tasks = [dataclasses.replace(task, processes=processes) for task in tasks]
        jobs = executor.map_array(RequeueableRun(run_task), tasks, [self.threads_per_run] * len(tasks))
        progress.slots = min(self.slots, len(tasks))
        pending = {}
        for job, task in zip(jobs, tasks):
            pending[job.job_id] = (job, task, time.monotonic())
            progress.started(task)
        outcomes: list[RunOutcome] = []
        while pending:
            for job_id, (job, task, started) in list(pending.items()):
                if job.done():
                    del pending[job_id]
                    outcome = self._collect(job, task, started)
                    outcomes.append(outcome)
                    progress.finished(outcome)
            if pending:
                time.sleep(self.poll_seconds)
                progress.tick()
        return outcomes

    @staticmethod
    def _collect(job, task: RunTask, started: float) -> RunOutcome:
        try:
            return job.result()
        except Exception as failure:  # the job itself died: time limit, memory, node failure
            lines = [line for line in str(failure).splitlines() if line.strip()]
            return RunOutcome(identity=task.identity, label=task.label, status="failed", record=None,
                              error=f"job {job.job_id}: {lines[0] if lines else type(failure).__name__}",
                              log_path=str(job.paths.stderr), seconds=time.monotonic() - started)
