"""Model selection on validation, the rule RecBole's baselines follow, for every model the
engine's loop trains.

Every ``eval_every`` epochs the loop ranks the validation targets (all users, or a sample
of ``validation_users`` users drawn with the run's seed) through the evaluator's ``valid``
phase, keeps the weights with the best validation NDCG@10, stops after ``patience``
rankings without improvement, and hands back the best weights. The evaluator is called
with the validation phase only: test targets are not read until the run's final
evaluation (``tests/engine/test_selection.py`` checks it).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from bench.config import EvalConfig

if TYPE_CHECKING:
    from bench.data.split import Split
    from bench.method import Method, RunContext

SELECTION_METRIC = "NDCG@10"
VALIDATION_SAMPLE_STREAM = 7  # (seed, stream): the users sample is independent of other draws


def sample_validation_users(candidates: np.ndarray, sample: int, seed: int) -> np.ndarray:
    """Sorted user indices: all ``candidates`` (the users with a validation target) when
    ``sample`` is 0 or at least their number, else ``sample`` of them drawn with ``seed``
    (the same in every epoch and every process)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if sample == 0 or sample >= len(candidates):
        return candidates
    rng = np.random.default_rng([seed, VALIDATION_SAMPLE_STREAM])
    return np.sort(rng.choice(candidates, size=sample, replace=False)).astype(np.int64)


class Validate(Protocol):
    """What the training loop calls for model selection. Before each validation the loop hands
    over the model being trained (unwrapped, in eval mode) with ``install``; the call then gives
    its validation metrics, and ``describe`` how they were measured (metric, users), which every
    engine method's record carries as ``selection``. :class:`Validator` is the one the engine's
    methods use."""

    def install(self, model: Any) -> None: ...

    def __call__(self) -> dict[str, float]: ...

    def describe(self) -> dict[str, Any]: ...


class Validator:
    """``validate()``: validation metrics of ``method`` on the chosen users. The method ranks
    with its own attributes; ``install(model)`` calls the ``install`` hook given here (one that
    makes the method rank with ``model``), or nothing for a method that already ranks with the
    very model object being trained."""

    def __init__(self, method: "Method", split: "Split", users: np.ndarray, evaluation: EvalConfig,
                 context: "RunContext", install: Callable[[Any], None] | None = None) -> None:
        if SELECTION_METRIC not in {f"NDCG@{k}" for k in evaluation.cutoffs}:
            evaluation = dataclasses.replace(evaluation, cutoffs=tuple(sorted({*evaluation.cutoffs, 10})))
        self.method, self.split, self.users, self.evaluation = method, split, users, evaluation
        self._install = install
        # No nested progress bar per validation inside the training bars.
        self.context = dataclasses.replace(context, show_progress=False)

    def install(self, model: Any) -> None:
        if self._install is not None:
            self._install(model)

    def __call__(self) -> dict[str, float]:
        from bench.evaluation.protocol import evaluate

        result = evaluate(self.method, self.split, "valid", self.evaluation, self.context, users=self.users)
        return {name: float(value) for name, value in result.means().items()}

    def describe(self) -> dict[str, Any]:
        candidates = len(self.split.phase_users("valid"))
        return {"metric": SELECTION_METRIC, "phase": "valid", "users": "sample" if len(self.users) < candidates
                else "all", "n_users": int(len(self.users)), "of_users": int(candidates),
                "mask_history": self.evaluation.mask_history}


def validation_scorer(method: "Method", split: "Split", validation_users: int, context: "RunContext",
                      evaluation: EvalConfig | None = None, install: Callable[[Any], None] | None = None) -> Validator:
    """The ``validate`` of :func:`bench.engine.training.train_model` for ``method``: its
    validation metrics on all users (``validation_users`` = 0) or a seeded sample. ``install``
    makes the method rank with the model the loop hands over (see :class:`Validator`)."""
    users = sample_validation_users(split.phase_users("valid"), validation_users, context.seed)
    return Validator(method, split, users, evaluation or EvalConfig(), context, install)


@dataclasses.dataclass
class Selection:
    """The loop's selection state; all of it is in every checkpoint, so a resumed run takes
    the same decisions (same curve, same best epoch, same stop)."""

    patience: int
    target: float = 0.0  # stop once a score reaches it (0: never); checkpoints from before it: 0
    curve: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    evaluations_since_best: int = 0
    stopped_by: str | None = None

    def update(self, entry: dict[str, Any]) -> bool:
        """Add one evaluated epoch (``entry["validation"]`` holds the metrics); True when it
        is the new best (strictly better NDCG@10: ties keep the earlier, shorter-trained model)."""
        self.curve.append(entry)
        value = entry["validation"][SELECTION_METRIC]
        if self.target and value >= self.target:
            self.stopped_by = "target"
        if self.best_value is None or value > self.best_value:
            self.best_epoch, self.best_value, self.evaluations_since_best = entry["epoch"], value, 0
            return True
        self.evaluations_since_best += 1
        if self.patience and self.evaluations_since_best >= self.patience and self.stopped_by is None:
            self.stopped_by = "patience"
        return False

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Selection":
        return cls(**state)
