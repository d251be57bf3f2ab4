"""The engine's one training loop, for every model (T5 methods, SETRec, TIGER, UniSRec):
:func:`train_model` over a task object, with model selection on validation.

A task says what the examples are and what the loss is:
- ``examples_for_epoch(epoch) -> Sequence`` (the same number every epoch, drawn from
  (seed, epoch) only);
- ``collate(examples) -> batch``: a dict of tensors (moved to the run's device), or any
  object ``loss`` reads as it is (IDGenRec's soft-ID batches place their own tensors);
- ``loss(model, batch) -> Tensor``;
- ``example_length``: ``example_length(example) -> int``, or ``None`` for a task whose
  examples have no length; with ``length_bucketing`` batches are cut from examples of
  similar length (:func:`bench.engine.batching.epoch_batches`).

The loop is AdamW with linear warm-up then linear decay (or a constant or inverse-sqrt
rate), gradient accumulation and clipping. By default the batches are shuffled per (seed,
epoch) and AdamW is torch's fused kernel; a task that draws its own order, or a loop that
must reproduce one written before (IDGenRec's generator phase), keeps the examples' order and
torch's default AdamW kernel (:func:`train_model`'s ``shuffle``, ``fused_optimizer``).

Device, precision and processes come from the run context's runtime (:mod:`bench.runtime`):
with N processes each global batch is split over them, so the global batch and the
learning-rate schedule are those of one process. Every ``eval_every`` epochs ``validate``
scores the model it is handed (``validate.install``); the best weights (validation NDCG@10)
are kept beside the last epoch's checkpoint, training stops after ``patience`` scores without
improvement (or at the first score at or above ``target_validation``, where that is set), and
the best weights are loaded before returning (:mod:`bench.engine.selection`).

A checkpoint is written at the end of every epoch (model, optimizer, scheduler, RNG
states, epoch, selection state; :mod:`bench.engine.checkpoints`), so a run killed at any
moment resumes from its last complete epoch and ends with exactly the weights, curve and
stopping point of a run that was never killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, Sequence

import numpy as np

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, option
from bench.devices import DeviceConfig
from bench.engine.batching import ExamplesForEpoch, Seq2SeqTask, epoch_batches
from bench.engine.checkpoints import (BEST_PREFIX, STATE_FILE, WEIGHTS_FILE, latest_checkpoint, load_checkpoint,
                                      restore_rng_states, rng_states, save_checkpoint, write_checkpoint_folder)
from bench.engine.selection import Selection, Validate
from bench.errors import BenchError
from bench.method import RunContext
from bench.progress import progress_note
from bench.trackers import curve_steps
from bench.run_guard import checkpoint_writing

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from bench.runtime import Runtime

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainingConfig(DeviceConfig):
    """Options of the training loop; method configs inherit them (``T5EngineConfig``, SETRec,
    UniSRec). Defaults are the ``paper`` profile's; the cpu profiles override a few. The
    device options (``device``, ``precision``, ``threads``) are the run's: the runner builds
    the runtime the loop trains with from them (``RunContext.runtime``)."""

    learning_rate: float = option(1e-3, "peak AdamW learning rate", range=POSITIVE)
    warmup_ratio: float = option(0.05, "share of optimizer steps with linear warm-up; linear decay after it",
                                 range=UNIT_INTERVAL)
    lr_schedule: Literal["linear", "constant", "inverse_sqrt"] = option(
        "linear", "after the warm-up: linear (decay to 0 at the last epoch of the cap, so the cap shapes the "
                  "schedule), constant, or inverse_sqrt (lr * sqrt(warm-up steps / step), TIGER §4.1); the last "
                  "two do not depend on the epoch cap, so a long cap with patience trains the same model as a "
                  "short one up to where the short one stops", added_later=True)
    warmup_steps: int = option(0, "optimizer steps of linear warm-up; 0: warmup_ratio of all steps",
                               added_later=True, range=NON_NEGATIVE)
    schedule_epochs: int = option(0, "epochs the linear schedule spans (0: the epoch cap); larger than the cap, "
                                     "training stops partway down it, where a run capped at this many epochs "
                                     "would be at that epoch", added_later=True, range=NON_NEGATIVE,
                                  omitted_at_default=True)
    weight_decay: float = option(0.01, "AdamW weight decay (not applied to layer norms and biases)", range=NON_NEGATIVE)
    epochs: int = option(10, "passes over the training examples (at most: see patience)", range=AT_LEAST_ONE)
    batch_size: int = option(32, "training examples per optimizer micro-step, over all processes together",
                             range=AT_LEAST_ONE)
    gradient_accumulation: int = option(1, "micro-steps (batches) per optimizer step", range=AT_LEAST_ONE)
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 switches clipping off)", range=NON_NEGATIVE)
    length_bucketing: bool = option(True, "cut batches from examples of similar length (less padding); the "
                                          "batches' order is still random per (seed, epoch)")
    eval_every: int = option(1, "epochs between rankings of the validation targets for model selection (0: no "
                                "selection, the last epoch's weights are tested)", range=NON_NEGATIVE)
    patience: int = option(5, "validation rankings without a better NDCG@10 before training stops (0: never "
                              "stop early; the best epoch's weights are still the ones tested)", range=NON_NEGATIVE)
    validation_users: int = option(0, "users whose validation target is ranked for model selection, sampled "
                                      "with the seed (0: all users)", range=NON_NEGATIVE)
    target_validation: float = option(0.0, "stop once a validation NDCG@10 reaches this value (0: off): the "
                                           "time-to-quality benchmark's stop (benchmarks/time_to_quality.py), not "
                                           "a model-selection rule; the best epoch's weights are still the ones "
                                           "tested", added_later=True, range=NON_NEGATIVE, omitted_at_default=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule_epochs and self.schedule_epochs < self.epochs:
            raise BenchError(f"config key 'schedule_epochs' ({self.schedule_epochs}) must be 0 or at least "
                             f"'epochs' ({self.epochs}): the linear schedule would reach 0 before the cap")


class TrainingTask(Protocol):
    # The length of an example for length bucketing, or None: examples without a length are
    # batched in their shuffled order whatever ``length_bucketing`` says.
    example_length: Callable[[Any], int] | None

    def examples_for_epoch(self, epoch: int) -> Sequence[Any]: ...

    def collate(self, examples: Sequence[Any]) -> Any: ...

    def loss(self, model: Any, batch: Any) -> "torch.Tensor": ...


@dataclasses.dataclass(frozen=True)
class TrainingReport:
    epochs: int  # epochs trained (fewer than max_epochs when patience or the target stopped the run)
    max_epochs: int
    examples_per_epoch: int
    optimizer_steps: int  # steps taken
    train_seconds: float
    validation_seconds: float
    final_epoch_loss: float | None
    resumed_from_epoch: int  # 0 when training started from scratch
    training_curve: tuple[dict[str, Any], ...] = ()  # one entry per validated epoch
    best_epoch: int | None = None  # None without validation: the last epoch's weights are kept
    stopped_by: str = "epochs"  # "epochs" (all trained), "patience" or "target" (target_validation reached)
    selection: dict[str, Any] | None = None  # how validation was done (metric, users, eval_every, patience)
    cpu_seconds: float = 0.0  # CPU time of all processes, training and validation, across resumes

    def record(self) -> dict[str, Any]:
        """What a run record keeps of the training: budget, time, loss, and the model selection."""
        found = dataclasses.asdict(self)
        found["training_curve"] = list(self.training_curve)
        if self.final_epoch_loss is not None:
            found["final_epoch_loss"] = round(self.final_epoch_loss, 6)
        return found


def _optimizer(model: Any, config: TrainingConfig, fused: bool):
    import torch

    # Weight decay on matrices only: decaying layer-norm gains and biases shrinks them for no reason.
    decayed = [p for _, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    kept = [p for _, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": kept, "weight_decay": 0.0}]
    # The fused kernel does all parameters in one call instead of one op per tensor per
    # moment: the optimizer step was ~6% of a cpu-profile step.
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=fused or None)


def _scheduler(optimizer: Any, config: TrainingConfig, total_steps: int) -> Any:
    from transformers import (get_constant_schedule_with_warmup, get_inverse_sqrt_schedule,
                              get_linear_schedule_with_warmup)

    warmup = config.warmup_steps or round(config.warmup_ratio * total_steps)
    if config.lr_schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    if config.lr_schedule == "inverse_sqrt":
        return get_inverse_sqrt_schedule(optimizer, max(warmup, 1))
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def _validation_due(config: TrainingConfig, epoch: int) -> bool:
    """After every ``eval_every``-th epoch, and after the last one (so its weights compete)."""
    return config.eval_every > 0 and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs)


def train_model(model: Any, task: TrainingTask, config: TrainingConfig, checkpoint_dir: Path, context: RunContext,
                validate: Validate | None = None, description: str = "train",
                checkpoint_interval_seconds: float = 0.0, cheap_dropout_masks: bool = True, seed: int | None = None,
                shuffle: bool = True, fused_optimizer: bool = True) -> TrainingReport:
    """Train ``model`` on ``task`` for at most ``config.epochs`` epochs, resuming from
    ``checkpoint_dir`` if a previous run left a checkpoint there, with model selection when
    ``validate`` is given and ``config.eval_every`` > 0. On every process, ``validate.install``
    gets the plain (unwrapped) model in eval mode, then ``validate()`` runs under ``torch.no_grad``.

    A checkpoint is written after every epoch, or, with ``checkpoint_interval_seconds``,
    after the first epoch that ends at least that long after the previous checkpoint (and
    after the last epoch): for loops of many tiny epochs, whose checkpoints would cost more
    than the epochs. ``cheap_dropout_masks`` draws CPU dropout masks from 16-bit random
    numbers (:mod:`bench.engine.dropout`); off, torch's own dropout (the earlier loop).
    ``seed`` (default: the run's) seeds the batches' order and the torch stream dropout draws
    from; a model trained in several phases of one run gives each phase its own. Without
    ``shuffle`` the batches are consecutive slices of ``examples_for_epoch(epoch)`` in its own
    order (for a task that draws the order itself; length buckets, which reorder, must be off).
    ``fused_optimizer`` off: torch's default AdamW kernel (per tensor on the CPU, for-each on
    CUDA) instead of the fused one; the two differ in the last bits of the weights.
    Returns with ``model`` in eval mode, holding the selected weights."""
    import torch

    from bench.engine.dropout import cheap_mask_dropout

    runtime = context.runtime
    seed = context.seed if seed is None else seed
    checkpoint_dir = Path(checkpoint_dir)
    if runtime.is_main_process:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    validate = validate if config.eval_every > 0 else None
    first_epoch_examples = task.examples_for_epoch(0)
    n_examples = len(first_epoch_examples)
    if n_examples == 0:
        raise BenchError("no training examples: every user's training sequence has fewer than 2 items")
    batches_per_epoch = math.ceil(n_examples / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation)
    total_steps = steps_per_epoch * (config.schedule_epochs or config.epochs)
    optimizer = _optimizer(model, config, fused=fused_optimizer and runtime.device.type in ("cpu", "cuda"))
    scheduler = _scheduler(optimizer, config, total_steps)

    start_epoch, train_seconds, validation_seconds, epoch_loss, scaler_state = 0, 0.0, 0.0, None, None
    cpu_seconds = 0.0
    selection = Selection(patience=config.patience, target=config.target_validation)
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint / STATE_FILE)
        # A finished training is reused by any process count: only its weights are read (the
        # evaluation is exact across processes). An unfinished one must resume as it started.
        finished = state["epoch"] >= config.epochs or state["selection"].get("stopped_by") is not None
        if state.get("processes", 1) != runtime.num_processes and not finished:
            # Another process count splits every batch differently: not the same run.
            raise BenchError(f"{checkpoint}: checkpoint was written by {state.get('processes', 1)} process(es), "
                             f"this run has {runtime.num_processes}; resume with --processes "
                             f"{state.get('processes', 1)}, or delete the folder to train from scratch")
        expected = {"examples_per_epoch": n_examples, "total_steps": total_steps}
        found = {key: state.get(key) for key in expected}
        if found != expected:
            raise BenchError(f"{checkpoint}: checkpoint was written for {found}, this run has {expected}; "
                             "delete the folder to train from scratch")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # Each process restores its own random stream (its dropout masks differ from the others').
        if not finished:
            restore_rng_states(state.get("rng_per_process", [state["rng"]])[runtime.process_index])
        start_epoch, train_seconds, epoch_loss = state["epoch"], state["train_seconds"], state["epoch_loss"]
        validation_seconds, scaler_state = state["validation_seconds"], state["scaler"]
        cpu_seconds = state.get("cpu_seconds", 0.0)  # checkpoints written before it was counted: 0
        selection = Selection.from_state(state["selection"])
    else:
        torch.manual_seed(seed)  # dropout draws from here; restored on resume
    model, optimizer, scheduler = runtime.prepare_training(model, optimizer, scheduler)
    runtime.load_scaler_state(scaler_state)
    plain = runtime.unwrap(model)
    lengths_of = task.example_length if config.length_bucketing else None

    model.train()
    last_checkpoint = time.perf_counter()
    epoch = start_epoch
    with contextlib.ExitStack() as stack:
        if cheap_dropout_masks:
            stack.enter_context(cheap_mask_dropout(plain))
        while epoch < config.epochs and selection.stopped_by is None:
            clock, cpu_clock = time.perf_counter(), time.process_time()
            examples = first_epoch_examples if epoch == 0 else task.examples_for_epoch(epoch)
            if len(examples) != n_examples:
                raise RuntimeError(f"epoch {epoch} has {len(examples)} examples, epoch 0 had {n_examples}")
            lengths = None if lengths_of is None else np.fromiter(map(lengths_of, examples), np.int64, n_examples)
            batches = epoch_batches(lengths, n_examples, config.batch_size, seed, epoch, shuffle=shuffle)
            epoch_loss = _train_one_epoch(model, task, examples, batches, optimizer, scheduler, config, runtime,
                                          context, f"{description} epoch {epoch + 1}/{config.epochs}")
            epoch_seconds = time.perf_counter() - clock
            train_seconds += epoch_seconds
            epoch += 1
            said = f"{description} epoch {epoch}/{config.epochs}: train loss {epoch_loss:.4f} ({epoch_seconds:.0f} s)"
            if validate is not None and _validation_due(config, epoch - 1):
                clock = time.perf_counter()
                metrics = _validate(validate, model, plain)
                seconds = time.perf_counter() - clock
                validation_seconds += seconds
                cpu_seconds += _cpu_seconds_of_all_processes(runtime, cpu_clock)
                improved = selection.update({
                    "epoch": epoch, "train_loss": round(epoch_loss, 6),
                    "validation": {name: round(value, 6) for name, value in metrics.items()},
                    "train_seconds": round(train_seconds, 2), "validation_seconds": round(seconds, 2),
                    "cpu_seconds": round(cpu_seconds, 2)})
                if improved and runtime.is_main_process:
                    write_checkpoint_folder(checkpoint_dir, f"{BEST_PREFIX}{epoch:04d}", WEIGHTS_FILE,
                                            plain.state_dict())
                shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
                said += f"; validation {shown} ({seconds:.0f} s), " + \
                    ("best so far" if improved else f"best epoch {selection.best_epoch}")
                if selection.stopped_by is not None:
                    said += f"; stopped by {selection.stopped_by}"
            else:
                cpu_seconds += _cpu_seconds_of_all_processes(runtime, cpu_clock)
            if context.tracker is not None:  # the run's experiment tracker (main process only)
                validated = selection.curve[-1] if selection.curve and selection.curve[-1]["epoch"] == epoch else {}
                context.tracker.log(curve_steps([{**validated, "epoch": epoch, "train_loss": epoch_loss,
                                                  "train_seconds": train_seconds}])[0][1], step=epoch)
            if runtime.is_main_process:  # the run log has every epoch; the terminal too unless quiet
                LOG.info(said)
                progress_note(said, context.show_progress)
            finished = epoch == config.epochs or selection.stopped_by is not None
            if not finished and time.perf_counter() - last_checkpoint < checkpoint_interval_seconds:
                continue
            last_checkpoint = time.perf_counter()
            with checkpoint_writing(epoch, config.epochs):  # a stop signal waits for a whole checkpoint
                rng_per_process = runtime.gather_objects(rng_states())  # every process takes part
                if runtime.is_main_process:
                    save_checkpoint(checkpoint_dir, epoch, {
                        "model": plain.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "scaler": runtime.scaler_state(), "rng": rng_states(),
                        "epoch": epoch, "train_seconds": train_seconds, "validation_seconds": validation_seconds,
                        "epoch_loss": epoch_loss, "examples_per_epoch": n_examples, "total_steps": total_steps,
                        "cpu_seconds": cpu_seconds,
                        "processes": runtime.num_processes, "rng_per_process": rng_per_process,
                        "selection": selection.state_dict()})
    runtime.barrier()
    if validate is not None and selection.best_epoch is not None:
        best = checkpoint_dir / f"{BEST_PREFIX}{selection.best_epoch:04d}" / WEIGHTS_FILE
        plain.load_state_dict(load_checkpoint(best))
    plain.eval()
    return TrainingReport(
        epochs=epoch, max_epochs=config.epochs, examples_per_epoch=n_examples,
        optimizer_steps=steps_per_epoch * epoch, train_seconds=round(train_seconds, 2),
        validation_seconds=round(validation_seconds, 2), final_epoch_loss=epoch_loss,
        resumed_from_epoch=start_epoch, training_curve=tuple(selection.curve), best_epoch=selection.best_epoch,
        stopped_by=selection.stopped_by or "epochs", cpu_seconds=round(cpu_seconds, 2),
        selection=None if validate is None else {**validate.describe(), "eval_every": config.eval_every,
                                                 "patience": config.patience})


def _cpu_seconds_of_all_processes(runtime: "Runtime", since: float) -> float:
    """CPU seconds since ``since`` (``time.process_time``), summed over the run's processes:
    what time to quality is counted in (benchmarks/time_to_quality.py)."""
    return runtime.mean_across_processes(time.process_time() - since) * runtime.num_processes


def _validate(validate: Validate, model: Any, plain: Any) -> dict[str, float]:
    import torch

    model.eval()
    # Validation must not move the training's random stream: with or without it, and
    # resumed or not, the epochs draw the same dropout masks.
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        validate.install(plain)
        metrics = validate()
    model.train()
    return metrics


def _train_one_epoch(model: Any, task: TrainingTask, examples: Sequence[Any], batches: list[np.ndarray], optimizer,
                     scheduler, config: TrainingConfig, runtime: "Runtime", context: RunContext,
                     description: str) -> float:
    n_batches = len(batches)
    loss_sum, bar = 0.0, context.progress(total=n_batches, desc=description, unit="batch")
    optimizer.zero_grad(set_to_none=True)
    for batch_number, indices in enumerate(batches):
        # This process's share of the global batch (all of it with one process).
        local = indices[runtime.shard(len(indices))]
        empty = len(local) == 0  # a last batch smaller than the process count
        batch = runtime.to_device(task.collate([examples[i] for i in (indices[:1] if empty else local)]))
        group_start = batch_number - batch_number % config.gradient_accumulation
        group_size = min(config.gradient_accumulation, n_batches - group_start)
        steps_now = batch_number - group_start + 1 == group_size
        with contextlib.nullcontext() if steps_now else runtime.no_sync(model):
            with runtime.autocast():
                loss = task.loss(model, batch)
            runtime.backward((loss * 0.0 if empty else loss) / group_size)
        if steps_now:
            if config.max_grad_norm > 0:
                runtime.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += float(loss.detach())
        bar.update(1)
        if batch_number % 50 == 0:
            bar.set_postfix(loss=f"{loss_sum / (batch_number + 1):.4f}", refresh=False)
    bar.close()
    return runtime.mean_across_processes(loss_sum / n_batches)


def train_seq2seq(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", examples_for_epoch: ExamplesForEpoch,
                  config: TrainingConfig, checkpoint_dir: Path, context: RunContext, validate: Validate | None = None,
                  description: str = "train", checkpoint_interval_seconds: float = 0.0,
                  pretokenize: bool = True, cheap_dropout_masks: bool = True) -> TrainingReport:
    """:func:`train_model` on the seq2seq task of (source, target) examples
    (:class:`bench.engine.batching.Seq2SeqTask`): strings or EOS-terminated token lists."""
    task = Seq2SeqTask(tokenizer, examples_for_epoch, pretokenize=pretokenize)
    return train_model(model, task, config, checkpoint_dir, context, validate=validate, description=description,
                       checkpoint_interval_seconds=checkpoint_interval_seconds,
                       cheap_dropout_masks=cheap_dropout_masks)
