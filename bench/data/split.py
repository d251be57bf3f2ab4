"""Splits: which interactions a method trains on and which it is tested on.

Three protocols behind one interface (:func:`make_split`), each giving a :class:`Split`:

- ``leave-one-out`` (default): the last item of each sequence is the test target, the second
  last the validation target, everything before is training. Every user is in both phases.
- ``temporal`` (SETRec, Sec. 4.1): all interactions ordered by timestamp (stable, so each
  user's order is kept) and cut 8:1:1 into a training, a validation and a test window.
- ``files``: a published split read from ``NAME.{train,valid,test}.inter``.

Under ``temporal`` and ``files`` a phase has several targets per user: all of the user's
interactions in that window (or file). A user's history for a phase is everything before the
phase: the training part for validation, the training part plus the validation targets for
test; under leave-one-out that is exactly the old behaviour. Users with no target in a phase
are skipped for that phase; under ``temporal`` users with no training interaction are left
out altogether (counted in ``Split.facts``), as SETRec's own split does.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

import numpy as np

from bench.data.dataset import MIN_INTERACTIONS, Dataset
from bench.errors import BenchError

Phase = Literal["valid", "test"]
PROTOCOLS = ("leave-one-out", "temporal", "files")
TEMPORAL_RATIOS = (0.8, 0.1, 0.1)  # SETRec Sec. 4.1: train / validation / test windows
TRAIN, VALID, TEST = 0, 1, 2  # phase codes of a published split (Dataset.phases)


@dataclasses.dataclass(frozen=True)
class Split:
    """Per user (index = the dataset's user index): training items, then each phase's targets."""

    train: list[np.ndarray]
    valid_items: list[np.ndarray]
    test_items: list[np.ndarray]
    n_items: int
    protocol: str = "leave-one-out"
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.train)

    @property
    def single_target(self) -> bool:
        """True under leave-one-out: every user has exactly one target in each phase."""
        return self.protocol == "leave-one-out"

    def _one_per_user(self, phase: Phase) -> np.ndarray:
        if not self.single_target:
            raise BenchError(f"the {self.protocol} protocol has several {phase} targets per user; "
                             "read them with split.target_lists(phase)")
        items = self.valid_items if phase == "valid" else self.test_items
        return np.asarray([targets[0] for targets in items], dtype=np.int64)

    @property
    def valid_target(self) -> np.ndarray:
        """Leave-one-out only: each user's validation item."""
        return self._one_per_user("valid")

    @property
    def test_target(self) -> np.ndarray:
        """Leave-one-out only: each user's test item."""
        return self._one_per_user("test")

    def histories(self, phase: Phase) -> list[np.ndarray]:
        """What a model may read to predict the phase's targets (never a target of the phase)."""
        if phase == "valid":
            return self.train
        return [np.concatenate([history, valid]) for history, valid in zip(self.train, self.valid_items)]

    def targets(self, phase: Phase) -> np.ndarray:
        """Leave-one-out only: one target per user (see :meth:`target_lists` for every protocol)."""
        return self._one_per_user(phase)

    def target_lists(self, phase: Phase) -> list[np.ndarray]:
        """Every protocol: each user's targets in the phase (empty: the user is skipped)."""
        return self.valid_items if phase == "valid" else self.test_items

    def phase_users(self, phase: Phase) -> np.ndarray:
        """Users evaluated in the phase: those with at least one target."""
        return np.flatnonzero([len(targets) > 0 for targets in self.target_lists(phase)]).astype(np.int64)

    def warm_items(self) -> np.ndarray:
        """Boolean mask over items: the item occurs in the training part (warm) or not (cold)."""
        mask = np.zeros(self.n_items, dtype=bool)
        if self.train:
            mask[np.concatenate(self.train).astype(np.int64)] = True
        return mask

    def digest(self) -> str:
        """Identifies protocol, users, order and targets; runs are comparable only when this matches."""
        digest = hashlib.sha256()
        if self.single_target:
            # The leave-one-out digest predates the other protocols; it stays what it was so
            # that records written before them remain comparable.
            digest.update(self.valid_target.tobytes())
            digest.update(self.test_target.tobytes())
        else:
            digest.update(self.protocol.encode())
            for items in (self.valid_items, self.test_items):
                digest.update(np.asarray([len(t) for t in items], dtype=np.int64).tobytes())
                digest.update(np.concatenate(items).astype(np.int64).tobytes() if items else b"")
        digest.update(np.asarray([len(h) for h in self.train], dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """What the run record keeps about the split (besides protocol and digest)."""
        counts = {f"{phase}_users": int(len(self.phase_users(phase))) for phase in ("valid", "test")}
        counts.update({f"{phase}_targets": int(sum(len(t) for t in self.target_lists(phase)))
                       for phase in ("valid", "test")})
        counts["users"] = self.n_users
        counts["train_interactions"] = int(sum(len(h) for h in self.train))
        warm = self.warm_items()
        for phase in ("valid", "test"):
            targets = self.target_lists(phase)
            flat = np.concatenate(targets).astype(np.int64) if targets else np.zeros(0, dtype=np.int64)
            counts[f"{phase}_cold_targets"] = int((~warm[flat]).sum())
        return {**counts, **self.facts}


def leave_one_out(dataset: Dataset) -> Split:
    for user, sequence in zip(dataset.user_ids, dataset.sequences):
        if len(sequence) < MIN_INTERACTIONS:
            raise BenchError(f"dataset '{dataset.name}': user '{user}' has {len(sequence)} interactions, "
                             f"leave-one-out needs {MIN_INTERACTIONS}")
    return Split(train=[s[:-2] for s in dataset.sequences], valid_items=[s[-2:-1] for s in dataset.sequences],
                 test_items=[s[-1:] for s in dataset.sequences], n_items=dataset.n_items)


def temporal_windows(dataset: Dataset, ratios: tuple[float, float, float] = TEMPORAL_RATIOS
                     ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Window code (0/1/2) of every interaction, from one global cut of the time-ordered data."""
    if dataset.timestamps is None:
        raise BenchError(f"dataset '{dataset.name}' has no timestamps; eval.protocol=temporal needs them "
                         "(e.g. RecBole atomic files with a timestamp:float column)")
    lengths = np.asarray([len(s) for s in dataset.sequences], dtype=np.int64)
    times = np.concatenate(dataset.timestamps) if len(lengths) else np.zeros(0)
    total = len(times)
    # Stable over the (user, position) order, so a user's ties keep their sequence order and
    # each user's windows are a prefix, a middle part and a suffix of their sequence.
    order = np.argsort(times, kind="stable")
    train_end, valid_end = int(total * ratios[0]), int(total * (ratios[0] + ratios[1]))
    window = np.empty(total, dtype=np.int8)
    window[order[:train_end]] = TRAIN
    window[order[train_end:valid_end]] = VALID
    window[order[valid_end:]] = TEST
    bounds = np.cumsum(lengths)[:-1]
    facts = {"ratios": list(ratios),
             "valid_window_starts_at": float(times[order[train_end]]) if train_end < total else None,
             "test_window_starts_at": float(times[order[valid_end]]) if valid_end < total else None}
    return np.split(window, bounds), facts


def _split_by_phase_codes(dataset: Dataset, codes: list[np.ndarray], protocol: str,
                          facts: dict[str, Any]) -> tuple[Dataset, Split]:
    has_train = np.asarray([bool((c == TRAIN).any()) for c in codes])
    kept = np.flatnonzero(has_train)
    facts = {**facts, "users_without_training_interactions": int((~has_train).sum())}
    if len(kept) < len(codes):
        dataset = dataset.select_users(kept)
        codes = [codes[u] for u in kept.tolist()]
    for user, code in zip(dataset.user_ids, codes):
        if (np.diff(code) < 0).any():
            raise BenchError(f"dataset '{dataset.name}': user '{user}' has a {protocol} split out of time "
                             "order (a training interaction after a validation or test one)")
    split = Split(train=[s[c == TRAIN] for s, c in zip(dataset.sequences, codes)],
                  valid_items=[s[c == VALID] for s, c in zip(dataset.sequences, codes)],
                  test_items=[s[c == TEST] for s, c in zip(dataset.sequences, codes)],
                  n_items=dataset.n_items, protocol=protocol, facts=facts)
    return dataset, split


def temporal(dataset: Dataset, ratios: tuple[float, float, float] = TEMPORAL_RATIOS) -> tuple[Dataset, Split]:
    codes, facts = temporal_windows(dataset, ratios)
    return _split_by_phase_codes(dataset, codes, "temporal", facts)


def published(dataset: Dataset) -> tuple[Dataset, Split]:
    if dataset.phases is None:
        raise BenchError(f"dataset '{dataset.name}' is not a published split; eval.protocol=files needs a folder "
                         "with NAME.train.inter, NAME.valid.inter and NAME.test.inter")
    facts = {"files_fingerprint": dataset.metadata.get("files_fingerprint")}
    return _split_by_phase_codes(dataset, list(dataset.phases), "files", facts)


def resolve_protocol(dataset: Dataset, requested: str) -> str:
    """``auto``: the published split when the data is one, leave-one-out otherwise."""
    if requested == "auto":
        return "files" if dataset.phases is not None else "leave-one-out"
    if requested not in PROTOCOLS:
        raise BenchError(f"config key 'eval.protocol' must be one of auto, {', '.join(PROTOCOLS)}; got '{requested}'")
    return requested


def make_split(dataset: Dataset, protocol: str = "auto") -> tuple[Dataset, Split]:
    """The one entry point: the (possibly user-restricted) dataset and its split."""
    chosen = resolve_protocol(dataset, protocol)
    if chosen == "temporal":
        return temporal(dataset)
    if chosen == "files":
        return published(dataset)
    return dataset, leave_one_out(dataset)
