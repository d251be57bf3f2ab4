"""UniSRec's training tasks for the engine's loop (:func:`bench.engine.training.train_model`),
and the scorer that ranks a catalogue with the current weights.

Both tasks train on every position t >= 1 of each training sequence (history[:t] -> item t,
RecBole's sequence augmentation, which the official pre-training data also uses). The
pre-training task adds to each example its augmented view (Sec. 3.3.2): item drop (each
history item dropped with ``item_drop_ratio``, the first kept) with probability
``item_drop_probability``, word drop otherwise (each position, with the same ratio, reads
its item's word-dropped text). The official code draws that choice once per batch; here it
is drawn per example, from (seed, epoch) alone, so a resumed epoch sees the same views.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from bench.method import RunContext

if TYPE_CHECKING:
    import torch

    from methods.unisrec.model import UniSRecModel

# (history over the catalogue, target item, augmented view or None); the view is
# (view history, word-drop mask over it).
Example = tuple[np.ndarray, int, "tuple[np.ndarray, np.ndarray] | None"]


@dataclasses.dataclass(frozen=True)
class Augmentation:
    item_drop_ratio: float
    item_drop_probability: float


def training_positions(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(user, position) of every training example: positions 1..len-1 of each sequence."""
    lengths = np.asarray([len(sequence) for sequence in sequences], dtype=np.int64)
    per_user = np.maximum(lengths - 1, 0)
    users = np.repeat(np.arange(len(lengths)), per_user)
    starts = np.cumsum(per_user) - per_user
    positions = np.arange(len(users)) - np.repeat(starts, per_user) + 1
    return users, positions


class SequenceTask:
    """Next-item examples over ``sequences``; with ``augmentation``, pre-training examples."""

    def __init__(self, sequences: Sequence[np.ndarray], max_seq_length: int, seed: int,
                 augmentation: Augmentation | None = None) -> None:
        self.sequences = [np.asarray(sequence, dtype=np.int64) for sequence in sequences]
        self.max_seq_length = max_seq_length
        self.seed = seed
        self.augmentation = augmentation
        self.users, self.positions = training_positions(self.sequences)

    def __len__(self) -> int:
        return len(self.users)

    def examples_for_epoch(self, epoch: int) -> list[Example]:
        rng = np.random.default_rng([self.seed, epoch, 23])
        examples: list[Example] = []
        for user, position in zip(self.users.tolist(), self.positions.tolist()):
            sequence = self.sequences[user]
            history = sequence[max(0, position - self.max_seq_length):position]
            examples.append((history, int(sequence[position]), self._view(history, rng)))
        return examples

    def _view(self, history: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        if self.augmentation is None:
            return None
        kept = rng.random(len(history)) >= self.augmentation.item_drop_ratio
        kept[0] = True
        if rng.random() < self.augmentation.item_drop_probability:
            view = history[kept]
            return view, np.zeros(len(view), dtype=bool)
        return history, ~kept

    @staticmethod
    def example_length(example: Example) -> int:
        return len(example[0])

    def collate(self, examples: Sequence[Example]) -> dict[str, "torch.Tensor"]:
        import torch

        from methods.unisrec.model import pad_histories

        history, length = pad_histories([example[0] for example in examples], self.max_seq_length)
        batch = {"history": torch.from_numpy(history), "length": torch.from_numpy(length),
                 "target": torch.as_tensor([example[1] for example in examples], dtype=torch.long)}
        if self.augmentation is not None:
            views = [example[2] for example in examples]
            view_history, view_length = pad_histories([view[0] for view in views], self.max_seq_length)
            word_drop = np.zeros(view_history.shape, dtype=bool)
            for row, (_, dropped) in enumerate(views):
                word_drop[row, :len(dropped)] = dropped
            batch.update({"view_history": torch.from_numpy(view_history),
                          "view_length": torch.from_numpy(view_length),
                          "view_word_drop": torch.from_numpy(word_drop)})
        return batch

    @staticmethod
    def loss(model: "UniSRecModel", batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return model(**batch)


class CatalogueScorer:
    """Scores every item of the model's current catalogue for a batch of histories, with
    the model's current weights: the harness's ``score`` for UniSRec, and the validation
    scorer during training (``output = "scores"``, the evaluator ranks)."""

    output = "scores"
    supports_candidates = False

    def __init__(self, model: "UniSRecModel", max_seq_length: int, runtime: Any, context: RunContext) -> None:
        self.model = model
        self.max_seq_length = max_seq_length
        self.runtime = runtime
        self.context = context
        self._catalogue: "torch.Tensor | None" = None

    def refresh(self) -> None:
        """Forget the catalogue vectors (the weights or the catalogue changed)."""
        self._catalogue = None

    def prepare_phase(self, phase: str) -> None:
        """Every phase is scored alike (the evaluator's hook, :meth:`bench.method.Method.prepare_phase`)."""

    def install(self, model: "UniSRecModel") -> None:
        """Score with ``model`` (the plain model the training loop hands over), whose weights
        changed since the last call."""
        self.model = model
        self.refresh()

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        import torch

        from methods.unisrec.model import pad_histories

        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), self.runtime.autocast():
            if self._catalogue is None:
                self._catalogue = self.model.adapted_catalogue()
            history, length = pad_histories(histories, self.max_seq_length)
            inputs = self.runtime.to_device({"history": torch.from_numpy(history), "length": torch.from_numpy(length)})
            scores = self.model.scores(inputs["history"], inputs["length"], self._catalogue)
        self.model.train(was_training)
        return scores.float().cpu().numpy()


def word_dropped(texts: Sequence[str], ratio: float, seed: int) -> list[str]:
    """Each text with every word dropped with probability ``ratio``, once per item (the
    official preprocessing stores one such copy: its word-drop augmentation, Sec. 3.3.2)."""
    rng = np.random.default_rng([seed, 7])
    dropped = []
    for text in texts:
        words = text.split(" ")
        kept = rng.random(len(words)) >= ratio
        dropped.append(" ".join(word for word, keep in zip(words, kept) if keep))
    return dropped
