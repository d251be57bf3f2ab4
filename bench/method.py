"""The method contract: fit on training data, then rank items for batches of users.

A score-based method implements :meth:`Method.score` (scores over all items; the harness
ranks, with pessimistic ties). A generative method sets ``output = "ranking"`` and
implements :meth:`Method.rank` (a top-k list of distinct items, best first); if it can
restrict its lists to a given set of items it sets ``supports_candidates = True``, and the
evaluator uses that for the warm/cold-within-group protocol. The evaluator sees nothing else.
A method may declare the table columns it fills (``table_columns``); the tables in
``bench/reference/tables.toml`` then show it with no edit to the harness.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Mapping

import numpy as np

from bench.data.dataset import Dataset
from bench.data.split import Phase, Split
from bench.progress import progress_bar
from bench.runtime import Runtime, cpu_runtime


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What ``fit`` may read: the dataset's catalogue and the split (validation targets
    are there for early stopping; test targets must not be read by a method)."""

    dataset: Dataset
    split: Split

    @property
    def n_items(self) -> int:
        return self.dataset.n_items


@dataclasses.dataclass(frozen=True)
class TableColumn:
    """A column a method fills in a table: ``table`` is a table's ``id`` in
    ``bench/reference/tables.toml`` (``standard`` is Table 4); ``where`` the config values a
    record needs to fill it; ``paper_label`` the label of the paper's number beside it in
    ``paper_table`` (a table of ``bench/reference/*.csv``, by default the table's own);
    ``family`` ``generative`` or ``reality-check`` puts the column in the table's reality-check
    note (:mod:`bench.reality_check`)."""

    table: str
    label: str
    where: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paper_label: str | None = None
    paper_table: str | None = None
    family: str | None = None


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where a run may keep checkpoints (the same folder when the same run is started
    again, so a killed run resumes), its seed, profile, whether to show progress, and the
    run's runtime (device, precision, processes), built once by the runner."""

    work_dir: Path
    seed: int
    profile: str
    show_progress: bool = True
    # Where the training curve goes as it is made (``--set tracker=...``): a bench.trackers.Tracker
    # on the main process of a run that asked for one, else None.
    tracker: Any = None
    # The run's device, precision and place among its processes (bench.runtime); a context made
    # without one (a test, a tool) computes on the CPU in fp32.
    runtime: Runtime = dataclasses.field(default_factory=cpu_runtime)

    def progress(self, iterable: Iterable | None = None, **kwargs: Any):
        return progress_bar(iterable, disable=not self.show_progress, **kwargs)


class Method(abc.ABC):
    config_class: ClassVar[type]
    # Overrides of the config defaults per profile; the defaults are the paper's values.
    profiles: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    output: ClassVar[Literal["scores", "ranking"]] = "scores"
    # A ranking method whose rank() honours ``candidates`` (see rank()).
    supports_candidates: ClassVar[bool] = False
    # False for a method that runs in one process only: the launcher and the runner then refuse
    # ``--processes`` > 1 before it starts (docs/gpu.md).
    supports_processes: ClassVar[bool] = True
    # The table columns this method fills beyond those bench/reference/tables.toml lists.
    table_columns: ClassVar[tuple[TableColumn, ...]] = ()

    def __init__(self, config: Any, context: RunContext) -> None:
        self.config = config
        self.context = context

    @abc.abstractmethod
    def fit(self, data: TrainingData) -> None:
        """Train on ``data.split.train`` (validation targets only for model selection)."""

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """Scores ``[len(users), n_items]``, higher is better."""
        raise NotImplementedError(f"{type(self).__name__} declares output='scores' but has no score()")

    def rank(self, users: np.ndarray, histories: list[np.ndarray], k: int,
             candidates: np.ndarray | None = None) -> np.ndarray:
        """Item indices ``[len(users), >= k]``, best first, distinct per row; with ``candidates``
        (a bool mask over items, only passed when ``supports_candidates``), only those items."""
        raise NotImplementedError(f"{type(self).__name__} declares output='ranking' but has no rank()")

    def prepare_phase(self, phase: Phase) -> None:
        """Called by the evaluator before it ranks the users of ``phase`` (``valid`` or ``test``):
        for a method whose input depends on what a phase may see (IDGenRec's user IDs). The
        histories it is then handed are that phase's."""

    def metadata(self) -> dict[str, Any]:
        """Facts the run discovered (model size, vocabulary, timings) for the record."""
        return {}
