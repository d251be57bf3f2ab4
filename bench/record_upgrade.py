"""Bring a run record made before the harness stored ranks up to date, without retraining.

Such a record holds per-user values (``per_user``, ``users_warm``, ...) instead of a ``ranks``
block, and it predates the repeat/novel partition (targets already in the user's history, or
not; docs/evaluation.md). Upgrading it:

- recovers its ranks from the per-user values (exact below the largest cutoff, unknown beyond
  it: :func:`bench.evaluation.stored_ranks.ranks_block_from_values`), so every metric at the
  record's cutoffs is unchanged;
- rebuilds the record's test split from its dataset folder, refuses a folder whose split digest
  differs from the record's, and flags the targets found in their user's history, as the
  evaluator does;
- adds ``metrics_repeat`` / ``metrics_novel`` and their counts where some target repeats;
- replaces the record file in place, atomically, and notes the upgrade in ``upgraded``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import resolve_data_config
from bench.data.prepare import prepare_dataset
from bench.data.split import make_split
from bench.errors import BenchError
from bench.evaluation.protocol import targets_in_history
from bench.evaluation.stored_ranks import encode_integers, per_user_fields, ranks_block_from_values
from bench.results import DERIVED_PREFIXES
from bench.storage import atomic_write_text


def _repeat_flags(record: dict[str, Any], data_dir: Path) -> np.ndarray:
    """Per evaluated user (one test target each): whether the target is in the user's history."""
    dataset = prepare_dataset(record["dataset"], data_dir, resolve_data_config(record["config"].get("data", {})))
    _, split = make_split(dataset, record["split"].get("protocol", "auto"))
    if split.digest() != record["split"]["digest"]:
        raise BenchError(f"{data_dir}: its {record['split']['protocol']} split has digest {split.digest()}, "
                         f"the record's is {record['split']['digest']}: not the data the record was evaluated on")
    evaluated = split.phase_users("test")
    n_users = len(record["per_user"][next(iter(record["per_user"]))])
    if len(evaluated) != n_users or n_users != int(evaluated[-1]) + 1:
        raise BenchError(f"run {record['run_id']}: {n_users} evaluated users in the record, "
                         f"{len(evaluated)} test users in the split (or not all of them): cannot align them")
    targets = np.concatenate(split.target_lists("test")[: n_users]).astype(np.int64)
    return targets_in_history(split.histories("test"), evaluated, targets, np.arange(n_users), split.n_items)


def upgraded_record(record: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The record with a ``ranks`` block in place of its per-user values, and the repeat/novel
    blocks its dataset implies."""
    if "ranks" in record:
        raise BenchError(f"run {record['run_id']}: already stores ranks; nothing to upgrade")
    block = ranks_block_from_values(record)
    repeated = _repeat_flags(record, data_dir)
    upgraded = {key: value for key, value in record.items() if not key.startswith(DERIVED_PREFIXES)}
    upgraded["ranks"] = block
    if repeated.any():
        block.setdefault("partitions", {})["repeat"] = encode_integers(repeated)
        derived = per_user_fields(block)
        upgraded["repeat_novel"] = {
            "repeat_targets": int(repeated.sum()), "repeat_users": len(derived["users_repeat"]),
            "novel_targets": int((~repeated).sum()), "novel_users": len(derived.get("users_novel", [])),
            "repeat_share": round(float(repeated.mean()), 6)}
        for side in ("repeat", "novel"):
            if f"per_user_{side}" in derived:
                upgraded[f"metrics_{side}"] = {name: round(float(np.mean(values)), 6)
                                               for name, values in derived[f"per_user_{side}"].items()}
    upgraded["upgraded"] = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            "what": "ranks recovered from per-user values (exact to the largest cutoff); "
                                    "repeat/novel partition from the dataset's test split"}
    return upgraded


def upgrade_record_file(path: Path, data_dir: Path) -> dict[str, Any]:
    """Upgrade the record at ``path`` in place; returns the upgraded record."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchError(f"{path}: not a readable run record ({error})") from None
    upgraded = upgraded_record(record, data_dir)
    check = per_user_fields(upgraded["ranks"])["per_user"]
    for name, values in record["per_user"].items():
        if not np.allclose(check[name], values, atol=1e-6):
            raise BenchError(f"{path}: {name} recovered from ranks differs from the stored values; not upgraded")
    atomic_write_text(Path(path), json.dumps(upgraded, indent=1))
    return upgraded


__all__ = ["upgraded_record", "upgrade_record_file"]
