"""What a run cost in core-seconds, read from its record.

A record keeps its times where its method measured them (docs/evaluation.md, "Inference time"):
``wall_time_seconds`` covers only the process that wrote the record, while the training time
across every process and resume sits in ``method_metadata``, in a place that depends on the
method. This module is the one reader of all of them, so that a table's cost (``bench table
NAME --cost``) sums the same quantity for every method.

**Training** (and the validation during it), across resumes, each part measured as well as its
record allows:

- the engine's training blocks (at the top of ``method_metadata`` for the P5 schemes and TIGER;
  ``training`` for SETRec, HSTU and RPG; ``pretraining`` / ``fine_tuning`` for UniSRec; each
  recommender phase of IDGenRec's ``schedule``): their ``cpu_seconds``, the CPU time of all the
  run's processes, when it covers every epoch (the run never resumed from a checkpoint written
  before it was counted); else ``train_seconds`` + ``validation_seconds`` (IDGenRec: the phase's
  ``seconds``), wall-clock;
- IDGenRec's generator phases and ``start_seconds``, RecBole's ``training_seconds`` (at least the
  fit's wall time, which also holds S3Rec's pre-training), wall-clock;
- the artifacts the run made itself: TIGER's RQ-VAE, P5-CID's index, RPG's decoding graph,
  item-text embeddings, the collaborative SASRec of SETRec's or LETTER's tokenizer; a shared
  artifact another run made (``reused``: those SASRecs, UniSRec's pre-training) counts with that
  run;
- a record with none of these (pop, recent, the kNN baselines): ``wall_time_seconds.fit``, the
  whole fit of a method that does not resume.

**Test ranking**: ``wall_time_seconds.evaluate``.

Wall-clock seconds count once per process (``hardware.processes``). They are of one-thread
processes, so a loaded machine, or a process paused and continued, makes them overstate the CPU
time; :attr:`RunCost.cpu_share` says how much of a cost was measured as CPU time.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

# Artifacts a run may have made itself, by their key in ``method_metadata``.
ARTIFACT_SECONDS = ("rqvae_seconds", "cid_index_seconds", "decoding_graph_seconds", "text_embedding_seconds")
ENGINE_BLOCKS = ("training", "pretraining", "fine_tuning")
# The RecBole SASRecs whose item embeddings a tokenizer aligns with (SETRec's, TIGER+LETTER's).
CF_TOKENIZERS = ("cf_tokenizer", "letter_cf_tokenizer")


@dataclasses.dataclass(frozen=True)
class RunCost:
    training: float  # core-seconds of training and of the validation during it, across resumes
    test: float  # core-seconds of the test rankings
    cpu: float  # the part of ``training`` measured as CPU time (the rest is wall-clock)

    @property
    def total(self) -> float:
        return self.training + self.test

    @property
    def cpu_share(self) -> float:
        return self.cpu / self.total if self.total else 0.0


def _seconds(value: Any) -> float:
    """A number of seconds, or the sum of a mapping of them (text embeddings, by item set)."""
    if isinstance(value, Mapping):
        return sum(_seconds(part) for part in value.values())
    return float(value or 0.0)


def _engine_block(block: Mapping[str, Any], curve: Sequence[Mapping[str, Any]], wall: float,
                  processes: int) -> tuple[float, float]:
    """(seconds, of which CPU) of one engine training: its CPU time when that covers every epoch
    (counted from the start, or ``curve`` shows it at every validated epoch), else ``wall``."""
    if block.get("reused"):
        return 0.0, 0.0
    cpu = block.get("cpu_seconds")
    covered = not block.get("resumed_from_epoch") or (curve and all("cpu_seconds" in entry for entry in curve))
    if cpu and covered:
        return float(cpu), float(cpu)
    return wall * processes, 0.0


def _training(record: Mapping[str, Any], processes: int) -> tuple[float, float] | None:
    """(seconds, of which CPU) of training that the record's ``method_metadata`` holds; None if none."""
    metadata = record.get("method_metadata") or {}
    curve = record.get("training_curve") or ()
    parts: list[tuple[float, float]] = []
    blocks = [metadata] + [metadata[key] for key in ENGINE_BLOCKS if isinstance(metadata.get(key), Mapping)]
    for block in blocks:
        if "train_seconds" in block:
            wall = _seconds(block["train_seconds"]) + _seconds(block.get("validation_seconds"))
            parts.append(_engine_block(block, curve, wall, processes))
    schedule = metadata.get("schedule") or ()
    for phase in schedule:
        parts.append(_engine_block(phase, (), _seconds(phase.get("seconds")), processes))
    if schedule:
        parts.append((_seconds(metadata.get("start_seconds")) * processes, 0.0))
    if "training_seconds" in metadata:
        fit = _seconds((record.get("wall_time_seconds") or {}).get("fit"))
        parts.append((max(_seconds(metadata["training_seconds"]), fit) * processes, 0.0))
    if not parts:
        return None
    for key in CF_TOKENIZERS:
        tokenizer = metadata.get(key)
        if isinstance(tokenizer, Mapping) and not tokenizer.get("reused"):
            parts.append((_seconds(tokenizer.get("training_seconds")) * processes, 0.0))
    parts.append((sum(_seconds(metadata.get(key)) for key in ARTIFACT_SECONDS) * processes, 0.0))
    return sum(seconds for seconds, _ in parts), sum(cpu for _, cpu in parts)


def run_cost(record: Mapping[str, Any]) -> RunCost:
    processes = int((record.get("hardware") or {}).get("processes") or 1)
    wall = record.get("wall_time_seconds") or {}
    training, cpu = _training(record, processes) or (_seconds(wall.get("fit")) * processes, 0.0)
    return RunCost(training, _seconds(wall.get("evaluate")) * processes, cpu)
