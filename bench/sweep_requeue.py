"""A sweep's SLURM job that preemption and time limits do not lose: submitit's checkpointing interface.

SLURM warns a job with a signal (submitit's: SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` names
another) ``signal_delay_s`` seconds before its time limit, and at preemption where the cluster
sends it (``SlurmctldParameters=preempt_send_user_signal``). submitit answers that signal by calling
the job's ``checkpoint`` method, saving the submission it returns and requeuing the job.

A run keeps its state in its work folder, and the same request resumes from the last checkpoint
there (:mod:`bench.runner`), so the submission to requeue is the same one: nothing else needs
saving. What this module adds is when the requeue happens: the warning signal stops the run as
SIGTERM does (:func:`bench.run_guard.stop_run`: the checkpoint being written is finished first),
and only then is submitit's handler called, so the job never leaves a half-written checkpoint.

SIGTERM (``scancel``, or a preemption on a cluster that requeues jobs itself, ``--requeue``)
stops the run at the same safe point and ends the job with exit code 143 and no result; a job
SLURM requeues resumes in the same way.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

from bench.run_guard import RunStopped, stop_run


def warning_signal() -> signal.Signals:
    """The signal submitit's job handles as "preempted or about to time out"."""
    from submitit import JobEnvironment

    return signal.Signals[f"SIG{JobEnvironment.USR_SIG}"]


class RequeueableRun:
    """The callable a sweep submits: ``work(*arguments)``, stopped at a safe point and requeued
    when the scheduler's warning signal arrives. ``work`` must resume from its own checkpoints
    when called again with the same arguments."""

    def __init__(self, work: Callable[..., Any]) -> None:
        self.work = work

    def __call__(self, *arguments: Any) -> Any:
        warning = warning_signal()
        requeue = signal.getsignal(warning)  # submitit's: calls checkpoint(), requeues, exits
        signal.signal(warning, stop_run)
        try:
            return self.work(*arguments)
        except RunStopped as stop:
            print(f"{stop.message()} ({signal.Signals(stop.signal_number).name}, process {os.getpid()})", flush=True)
            if stop.signal_number == warning and callable(requeue):
                requeue(warning, None)
            raise SystemExit(stop.exit_code) from None
        finally:
            # The work is over (or stopping): a late warning has nothing left to save.
            signal.signal(warning, signal.SIG_IGN)

    def checkpoint(self, *arguments: Any):
        """submitit's checkpointing interface: the submission to requeue, the same call."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *arguments)
