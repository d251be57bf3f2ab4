"""The ``hstu`` plugin: score-based HSTU over all items, trained by the engine's loop.

A training example is one user's training sequence (its last ``max_history + 1`` items):
every position predicts the next item, as in the authors' sequential setting (§4.1.1). The
loop selects the epoch by validation NDCG@10 with patience, like every engine method.
Scoring reads the output at the last history position against every item.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from bench.config import AT_LEAST_ONE, BELOW_ONE, NON_NEGATIVE, POSITIVE, option
from bench.engine.model import count_parameters
from bench.engine.training import TrainingConfig
from bench.errors import BenchError
from bench.method import Method, TableColumn, TrainingData

if TYPE_CHECKING:
    import torch

    from methods.hstu.model import HSTUModel


@dataclasses.dataclass(frozen=True)
class HSTUConfig(TrainingConfig):
    """Defaults are the authors' Amazon Books configuration (configs/amzn-books/
    hstu-sampled-softmax-n512-final.gin of meta-recsys/generative-recommenders)."""

    max_history: int = option(50, "most recent items a sequence keeps (N, also the attention's divisor)",
                              range=AT_LEAST_ONE)
    hidden_size: int = option(64, "item embedding and block width d", range=AT_LEAST_ONE)
    num_layers: int = option(4, "HSTU blocks", range=AT_LEAST_ONE)
    num_heads: int = option(4, "attention heads", range=AT_LEAST_ONE)
    attention_dim: int = option(16, "query/key size per head (d_qk)", range=AT_LEAST_ONE)
    linear_dim: int = option(16, "value/gate size per head (d_v)", range=AT_LEAST_ONE)
    dropout: float = option(0.5, "dropout of the input embeddings and of each block's gated output", range=BELOW_ONE)
    negatives: int = option(512, "uniformly sampled negatives per position of the sampled softmax (0: full "
                                 "softmax over every item)", range=NON_NEGATIVE)
    temperature: float = option(0.05, "softmax temperature of the cosine logits", range=POSITIVE)
    time_buckets: int = option(128, "log buckets of the time-gap bias, used where the dataset has timestamps "
                                    "(0: position bias only)", range=NON_NEGATIVE)
    learning_rate: float = option(1e-3, "peak AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_ratio: float = option(0.0, "share of optimizer steps with linear warm-up")
    epochs: int = option(201, "passes over the users' training sequences, at most (patience stops earlier)")
    batch_size: int = option(128, "training sequences per optimizer step")


def right_padded(rows: Sequence[np.ndarray], width: int, dtype: Any = np.int64) -> np.ndarray:
    """Rows left-aligned into ``[len(rows), width]`` with zeros after them (HSTU reads
    positions from the start of the kept window)."""
    padded = np.zeros((len(rows), width), dtype=dtype)
    for row, values in enumerate(rows):
        padded[row, :len(values)] = values
    return padded


def window_times(times: Sequence[np.ndarray], width: int) -> "torch.Tensor":
    """Right-padded float32 times of each window counted from its first item: epoch seconds
    (~1.7e9) in float32 would be off by up to a minute, gaps from the window's start are not."""
    import torch

    shifted = [np.asarray(row, dtype=np.float64) - (row[0] if len(row) else 0.0) for row in times]
    return torch.from_numpy(right_padded(shifted, width, np.float64)).float()


class SequenceTask:
    """One example per user with at least two training items; deterministic per epoch
    (the loop shuffles the order per (seed, epoch))."""

    def __init__(self, sequences: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None,
                 max_history: int) -> None:
        self.sequences, self.timestamps, self.max_history = sequences, timestamps, max_history
        self.users = [user for user, sequence in enumerate(sequences) if len(sequence) >= 2]

    def examples_for_epoch(self, epoch: int) -> list[int]:
        return self.users

    def example_length(self, user: int) -> int:
        return min(len(self.sequences[user]), self.max_history + 1)

    def collate(self, users: Sequence[int]) -> dict[str, "torch.Tensor"]:
        import torch

        windows = [np.asarray(self.sequences[user][-(self.max_history + 1):], dtype=np.int64) + 1 for user in users]
        width = max(len(window) for window in windows) - 1
        batch = {"items": torch.from_numpy(right_padded([w[:-1] for w in windows], width)),
                 "targets": torch.from_numpy(right_padded([w[1:] for w in windows], width))}
        if self.timestamps is not None:
            times = [np.asarray(self.timestamps[user][-(self.max_history + 1):-1], dtype=np.float64) for user in users]
            batch["timestamps"] = window_times(times, width)
        return batch

    @staticmethod
    def loss(model: "HSTUModel", batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return model(**batch)


def aligned_timestamps(data: TrainingData) -> list[np.ndarray] | None:
    """Training-sequence timestamps, when the dataset has them and the split's training
    sequences are prefixes of the users' sequences (leave-one-out); else None."""
    dataset, train = data.dataset, data.split.train
    if dataset.timestamps is None:
        return None
    if not all(np.array_equal(dataset.sequences[user][:len(sequence)], sequence)
               for user, sequence in enumerate(train)):
        return None
    return [np.asarray(dataset.timestamps[user][:len(sequence)]) for user, sequence in enumerate(train)]


class HSTU(Method):
    config_class = HSTUConfig
    # cpu: two blocks and 128 negatives (the authors' MovieLens-1M setting has two blocks and
    # 128 negatives too), one thread, at most 100 epochs with patience 5 on validation.
    profiles = {"cpu": {"threads": 1, "num_layers": 2, "negatives": 128, "epochs": 100, "patience": 5}}
    # Not in IDGenRec's Table 4: a column of its own, with no paper number on this protocol.
    table_columns = (TableColumn(table="standard", label="HSTU"),)

    def fit(self, data: TrainingData) -> None:
        import torch

        from bench.engine.selection import validation_scorer
        from bench.engine.training import train_model
        from methods.hstu.model import HSTUModel

        config, context = self.config, self.context
        self.runtime = context.runtime
        self.timestamps = aligned_timestamps(data) if config.time_buckets else None
        self.dataset = data.dataset
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            self.network = HSTUModel(data.n_items, config.hidden_size, config.num_layers, config.num_heads,
                                     config.attention_dim, config.linear_dim, config.dropout, config.max_history,
                                     config.time_buckets if self.timestamps is not None else 0,
                                     config.temperature, config.negatives)
        task = SequenceTask(data.split.train, self.timestamps, config.max_history)
        if not task.users:
            raise BenchError("hstu: no training examples (every user's training part has fewer than 2 items)")
        validate = validation_scorer(self, data.split, config.validation_users, context,
                                     install=self._use_network)
        self.training_report = train_model(self.network, task, config, context.work_dir / "checkpoints", context,
                                           validate=validate, description="hstu")
        self.network = self.runtime.place(self.network)
        self.network.eval()

    def _use_network(self, network: "HSTUModel") -> None:
        """Validation during training ranks with the network being trained."""
        self.network = network

    def _history_timestamps(self, users: np.ndarray, histories: list[np.ndarray]) -> list[np.ndarray] | None:
        """Timestamps of the histories: each is a prefix of its user's sequence under leave-one-out."""
        if self.timestamps is None:
            return None
        return [np.asarray(self.dataset.timestamps[user][:len(history)])[-self.config.max_history:]
                for user, history in zip(np.asarray(users).tolist(), histories)]

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        import torch

        recent = [np.asarray(history, dtype=np.int64)[-self.config.max_history:] + 1 for history in histories]
        lengths = np.array([max(len(history), 1) for history in recent])
        items = torch.from_numpy(right_padded(recent, int(lengths.max())))
        times = self._history_timestamps(users, histories)
        timestamps = None if times is None else window_times(times, items.shape[1])
        items, lengths_tensor, timestamps = self.runtime.to_device((items, torch.from_numpy(lengths), timestamps))
        with torch.no_grad(), self.runtime.autocast():
            return self.network.score(items, lengths_tensor, timestamps).cpu().numpy()

    def metadata(self) -> dict[str, Any]:
        found: dict[str, Any] = {"parameters": count_parameters(self.network),
                                 "time_bias": self.timestamps is not None,
                                 "softmax": "full" if self.config.negatives == 0 else "sampled",
                                 "training": self.training_report.record()}
        found["training_curve"] = found["training"].pop("training_curve")  # the runner lifts it into the record
        found["selection"] = found["training"].pop("selection")  # where every engine method records it
        return found
