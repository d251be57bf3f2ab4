"""One seq2seq training loop for every T5-based method, and the sequential-recommendation
training examples of P5/IDGenRec.

The loop is AdamW with linear warm-up then linear decay, gradient accumulation and
clipping. It writes a checkpoint at the end of every epoch (model, optimizer, scheduler,
RNG states, epoch) into a fresh folder that is renamed into place only once complete, so
a run killed at any moment resumes from its last complete epoch and ends with exactly
the weights of a run that was never killed: the data order and prompt templates of an
epoch are drawn from (seed, epoch) alone, and dropout's RNG state is restored.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from bench.engine.model import T5EngineConfig
from bench.engine.prompts import build_prompt, sample_template_indices
from bench.errors import BenchError
from bench.method import RunContext

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# (source prompt, target text), either as strings or already as token IDs (EOS-terminated).
Example = tuple[str | Sequence[int], str | Sequence[int]]
ExamplesForEpoch = Callable[[int], Sequence[Example]]

CHECKPOINT_PREFIX = "epoch-"
STATE_FILE = "state.pt"
IGNORE_INDEX = -100  # label positions the loss skips (padding)


@dataclasses.dataclass(frozen=True)
class TrainingReport:
    epochs: int
    examples_per_epoch: int
    optimizer_steps: int
    train_seconds: float
    final_epoch_loss: float | None
    resumed_from_epoch: int  # 0 when training started from scratch


class SequentialExamples:
    """P5/IDGenRec data augmentation: every position t >= 1 of a user's training sequence
    is one example, prompt(history[:t]) -> ID of item t (or only the last position)."""

    def __init__(self, train_sequences: Sequence[np.ndarray], item_identifiers: Sequence[str], max_history: int,
                 seed: int, user_identifiers: Sequence[str] | None = None, last_position_only: bool = False) -> None:
        self.sequences = train_sequences
        self.item_identifiers = item_identifiers
        self.user_identifiers = user_identifiers
        self.max_history = max_history
        self.seed = seed
        lengths = np.asarray([len(sequence) for sequence in train_sequences], dtype=np.int64)
        if last_position_only:
            users = np.flatnonzero(lengths >= 2)
            positions = lengths[users] - 1
        else:
            users = np.repeat(np.arange(len(lengths)), np.maximum(lengths - 1, 0))
            # Positions 1..len-1 of each user, laid out user after user.
            starts = np.cumsum(np.maximum(lengths - 1, 0)) - np.maximum(lengths - 1, 0)
            positions = np.arange(len(users)) - np.repeat(starts, np.maximum(lengths - 1, 0)) + 1
        self.users, self.positions = users, positions

    def __len__(self) -> int:
        return len(self.users)

    def __call__(self, epoch: int) -> list[Example]:
        # Templates depend on (seed, epoch) only, so a resumed epoch sees the same prompts.
        rng = np.random.default_rng([self.seed, epoch, 0])
        template_indices = sample_template_indices(len(self.users), rng)
        examples = []
        for user, position, template in zip(self.users.tolist(), self.positions.tolist(), template_indices.tolist()):
            sequence = self.sequences[user]
            history = [self.item_identifiers[item] for item in sequence[max(0, position - self.max_history):position]]
            user_id = self.user_identifiers[user] if self.user_identifiers is not None else None
            examples.append((build_prompt(history, self.max_history, template, user_id),
                             self.item_identifiers[sequence[position]]))
        return examples


def _optimizer(model: "PreTrainedModel", config: T5EngineConfig):
    import torch

    # Weight decay on matrices only: decaying layer-norm gains shrinks them for no reason.
    decayed = [p for _, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    kept = [p for _, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def _rng_states() -> dict[str, Any]:
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _restore_rng_states(states: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The last complete epoch folder (a folder only gets its final name once complete)."""
    if not checkpoint_dir.is_dir():
        return None
    complete = sorted(path for path in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*")
                      if path.is_dir() and path.name[len(CHECKPOINT_PREFIX):].isdigit()
                      and (path / STATE_FILE).is_file())
    return complete[-1] if complete else None


def _save_checkpoint(checkpoint_dir: Path, epoch: int, state: dict[str, Any]) -> None:
    import torch

    final = checkpoint_dir / f"{CHECKPOINT_PREFIX}{epoch:04d}"
    temporary = checkpoint_dir / f".tmp-{CHECKPOINT_PREFIX}{epoch:04d}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    with open(temporary / STATE_FILE, "wb") as stream:
        torch.save(state, stream)
        stream.flush()
        os.fsync(stream.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)
    # Only the newest checkpoint is needed to resume; older ones would fill the disk
    # (t5-small with its Adam moments is ~0.7 GB per epoch).
    for path in checkpoint_dir.iterdir():
        if path != final and (path.name.startswith(CHECKPOINT_PREFIX) or path.name.startswith(".tmp-")):
            shutil.rmtree(path, ignore_errors=True)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        # Our own file; it holds RNG states (numpy arrays, tuples), hence not weights_only.
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise BenchError(f"{path / STATE_FILE}: cannot read checkpoint ({error}); delete the folder to "
                         "train from scratch") from None


def _tokenize_batch(tokenizer: "PreTrainedTokenizerBase", batch: Sequence[Example]):
    from bench.engine.prompt_encoding import pad_token_lists

    def encode(texts):
        if all(isinstance(text, str) for text in texts):
            encoded = tokenizer(list(texts), padding=True, return_tensors="pt")
            return encoded.input_ids, encoded.attention_mask
        return pad_token_lists(texts, tokenizer.pad_token_id)

    input_ids, attention_mask = encode([source for source, _ in batch])
    labels, label_mask = encode([target for _, target in batch])
    labels[label_mask == 0] = IGNORE_INDEX
    return input_ids, attention_mask, labels


def train_seq2seq(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", examples_for_epoch: ExamplesForEpoch,
                  config: T5EngineConfig, checkpoint_dir: Path, context: RunContext,
                  description: str = "train", checkpoint_interval_seconds: float = 0.0) -> TrainingReport:
    """Train ``model`` for ``config.epochs`` epochs, resuming from ``checkpoint_dir`` if a
    previous run left a checkpoint there. A checkpoint is written after every epoch, or,
    with ``checkpoint_interval_seconds``, after the first epoch that ends at least that long
    after the previous checkpoint (and after the last epoch): for loops of many tiny epochs,
    whose checkpoints would cost more than the epochs. ``examples_for_epoch(e)`` must return the same
    number of examples for every epoch and depend only on ``e``."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    first_epoch_examples = examples_for_epoch(0)
    n_examples = len(first_epoch_examples)
    if n_examples == 0:
        raise BenchError("no training examples: every user's training sequence has fewer than 2 items")
    batches_per_epoch = math.ceil(n_examples / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation)
    total_steps = steps_per_epoch * config.epochs
    optimizer = _optimizer(model, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)

    start_epoch, train_seconds, epoch_loss = 0, 0.0, None
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is not None:
        state = _load_checkpoint(checkpoint)
        expected = {"examples_per_epoch": n_examples, "total_steps": total_steps}
        found = {key: state.get(key) for key in expected}
        if found != expected:
            raise BenchError(f"{checkpoint}: checkpoint was written for {found}, this run has {expected}; "
                             "delete the folder to train from scratch")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng_states(state["rng"])
        start_epoch, train_seconds, epoch_loss = state["epoch"], state["train_seconds"], state["epoch_loss"]
    else:
        torch.manual_seed(context.seed)  # dropout draws from here; restored on resume

    model.train()
    last_checkpoint = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        clock = time.perf_counter()
        examples = first_epoch_examples if epoch == 0 else examples_for_epoch(epoch)
        if len(examples) != n_examples:
            raise RuntimeError(f"epoch {epoch} has {len(examples)} examples, epoch 0 had {n_examples}")
        epoch_loss = _train_one_epoch(model, tokenizer, examples, optimizer, scheduler, config, context,
                                      epoch, f"{description} epoch {epoch + 1}/{config.epochs}")
        train_seconds += time.perf_counter() - clock
        if epoch + 1 < config.epochs and time.perf_counter() - last_checkpoint < checkpoint_interval_seconds:
            continue
        last_checkpoint = time.perf_counter()
        _save_checkpoint(checkpoint_dir, epoch + 1, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": _rng_states(), "epoch": epoch + 1, "train_seconds": train_seconds, "epoch_loss": epoch_loss,
            "examples_per_epoch": n_examples, "total_steps": total_steps})
    model.eval()
    return TrainingReport(epochs=config.epochs, examples_per_epoch=n_examples, optimizer_steps=total_steps,
                          train_seconds=round(train_seconds, 2), final_epoch_loss=epoch_loss,
                          resumed_from_epoch=start_epoch)


def _train_one_epoch(model, tokenizer, examples: Sequence[Example], optimizer, scheduler, config: T5EngineConfig,
                     context: RunContext, epoch: int, description: str) -> float:
    import torch

    order = np.random.default_rng([context.seed, epoch, 1]).permutation(len(examples))
    batch_starts = range(0, len(examples), config.batch_size)
    n_batches = len(batch_starts)
    loss_sum, bar = 0.0, context.progress(total=n_batches, desc=description, unit="batch")
    optimizer.zero_grad(set_to_none=True)
    for batch_number, start in enumerate(batch_starts):
        input_ids, attention_mask, labels = _tokenize_batch(
            tokenizer, [examples[i] for i in order[start:start + config.batch_size]])
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        group_start = batch_number - batch_number % config.gradient_accumulation
        group_size = min(config.gradient_accumulation, n_batches - group_start)
        (loss / group_size).backward()
        if batch_number - group_start + 1 == group_size:
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += float(loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / (batch_number + 1):.4f}", refresh=False)
    bar.close()
    return loss_sum / n_batches
