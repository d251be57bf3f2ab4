"""A run record's test results stored as ranks, the facts every per-user metric derives from.

A record's ``ranks`` block holds, for the evaluated users, the rank of each of their test
targets among all items, one flag per target for each partition of the targets (warm or cold),
and, when measured, each target's rank within its own side of the warm/cold partition (SETRec's
protocol). HR, NDCG and Recall at the record's cutoffs, over all targets and over each side of
each partition, are computed from them when the record is read, by the evaluator's own
functions and rounded as records always rounded them, so a reader gets the values the
evaluator computed (``per_user``, ``per_user_warm``, ``users_warm``, ... as before).

Integer arrays are text: little-endian integers of the smallest width that holds them,
zlib-compressed and base64-encoded, after their width (``"i2:eJz..."``). A target outside a
ranking method's list has rank -1.
"""

from __future__ import annotations

import base64
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import BenchError
from bench.evaluation.metrics import MISSING, subset_metrics, user_metrics

if TYPE_CHECKING:
    from bench.evaluation.protocol import PhaseResult

FORMAT = 1
# A partition of the test targets by a flag per target: the name of the flagged side, and of the
# other. A new partition (say, targets the user had already interacted with, or not) is one more
# entry here and one more flag array in ``ranks_block``; readers then get its blocks too.
PARTITIONS = {"warm": "cold", "repeat": "novel"}
# In-group ranks are ranks within the target's side of this partition.
IN_GROUP_PARTITION = "warm"
DECIMALS = 6  # the rounding of per-user values in every record, before this block and since
_WIDTHS = (np.int8, np.int16, np.int32, np.int64)


def encode_integers(values: np.ndarray) -> str:
    values = np.asarray(values, dtype=np.int64)
    low, high = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    width = next(w for w in _WIDTHS if np.iinfo(w).min <= low and high <= np.iinfo(w).max)
    payload = zlib.compress(values.astype(np.dtype(width).newbyteorder("<")).tobytes(), 9)
    return f"i{np.dtype(width).itemsize}:" + base64.b64encode(payload).decode("ascii")


def decode_integers(text: str) -> np.ndarray:
    try:
        width, payload = text.split(":", 1)
        raw = zlib.decompress(base64.b64decode(payload, validate=True))
        return np.frombuffer(raw, dtype=np.dtype(f"<{width}")).astype(np.int64)
    except (ValueError, TypeError, zlib.error) as error:
        raise BenchError(f"not an encoded integer array ({error})") from None


def _encode_ranks(ranks: np.ndarray) -> str:
    return encode_integers(np.where(ranks == MISSING, -1, ranks))


def _decode_ranks(text: str) -> np.ndarray:
    ranks = decode_integers(text)
    return np.where(ranks < 0, MISSING, ranks)


def ranks_block(result: PhaseResult) -> dict[str, Any]:
    """What a record stores of a test phase: users, targets per user, ranks, partition flags."""
    counts = np.bincount(result.owners, minlength=len(result.users))
    block: dict[str, Any] = {
        "format": FORMAT, "cutoffs": list(result.cutoffs), "several_targets": not result.single_target,
        # users in index order: their differences compress to almost nothing
        "user_steps": encode_integers(np.diff(result.users, prepend=0)),
        "targets_per_user": encode_integers(counts),
        "all": _encode_ranks(result.ranks),
    }
    if result.reports_groups:
        block["partitions"] = {"warm": encode_integers(result.warm_targets)}
    if result.repeat_targets is not None and result.repeat_targets.any():  # targets already in the history
        block.setdefault("partitions", {})["repeat"] = encode_integers(result.repeat_targets)
    if result.group_ranks is not None:
        block["in_group"] = _encode_ranks(result.group_ranks)
    return block


def _rounded(per_user: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {name: np.round(values, DECIMALS).tolist() for name, values in per_user.items()}


def per_user_fields(block: dict[str, Any]) -> dict[str, Any]:
    """The per-user fields a record's ``ranks`` block derives: ``per_user``, and for each side of
    each partition ``per_user_<side>`` with its ``users_<side>`` (``per_user_<side>_in_group`` too
    where in-group ranks are stored); a side no target is on has none."""
    if block.get("format") != FORMAT:
        raise BenchError(f"ranks block of format {block.get('format')!r}; this version reads format {FORMAT}")
    users = np.cumsum(decode_integers(block["user_steps"]))
    counts = decode_integers(block["targets_per_user"])
    owners = np.repeat(np.arange(len(users)), counts)
    ranks = _decode_ranks(block["all"])
    cutoffs, single = tuple(block["cutoffs"]), not block["several_targets"]
    fields: dict[str, Any] = {"per_user": _rounded(user_metrics(ranks, owners, len(users), cutoffs, single))}
    group_ranks = _decode_ranks(block["in_group"]) if "in_group" in block else None
    for flagged, other in PARTITIONS.items():
        if flagged not in block.get("partitions", {}):
            continue
        flags = decode_integers(block["partitions"][flagged]).astype(bool)
        for side, chosen in ((flagged, flags), (other, ~flags)):
            subset = subset_metrics(users, ranks, owners, chosen, cutoffs, single)
            if subset is None:
                continue
            fields[f"users_{side}"] = subset.users.tolist()
            fields[f"per_user_{side}"] = _rounded(subset.per_user)
            if group_ranks is not None and flagged == IN_GROUP_PARTITION:
                in_group = subset_metrics(users, group_ranks, owners, chosen, cutoffs, single)
                fields[f"per_user_{side}_in_group"] = _rounded(in_group.per_user)
    return fields


def _ranks_below_cutoff(per_user: dict[str, list[float]], cutoff: int) -> np.ndarray:
    """One target per user: its rank where HR@cutoff is 1 (NDCG@cutoff = 1/log2(rank + 2)), -1 beyond."""
    ndcg = np.asarray(per_user[f"NDCG@{cutoff}"], dtype=np.float64)
    hit = np.asarray(per_user[f"HR@{cutoff}"], dtype=np.float64) > 0
    return np.where(hit, np.rint(2.0 ** (1.0 / np.where(hit, ndcg, 1.0)) - 2.0), -1).astype(np.int64)


def ranks_block_from_values(record: dict[str, Any]) -> dict[str, Any]:
    """The ``ranks`` block of a leave-one-out record made before ranks were stored, recovered from
    its per-user values: exact below the largest cutoff, where a target's NDCG gives its rank, and
    unknown (-1) beyond it (``ranked_to``), so the metrics at the record's cutoffs come out equal."""
    if record["split"].get("protocol", "leave-one-out") != "leave-one-out" or "Recall@5" in record["per_user"]:
        raise BenchError(f"run {record['run_id']}: only one-target (leave-one-out) records convert")
    cutoffs = tuple(record["config"]["eval"]["cutoffs"])
    n_users = len(record["per_user"][f"HR@{cutoffs[0]}"])
    ranks = _ranks_below_cutoff(record["per_user"], max(cutoffs))
    block: dict[str, Any] = {
        "format": FORMAT, "cutoffs": list(cutoffs), "several_targets": False, "ranked_to": max(cutoffs),
        "user_steps": encode_integers(np.diff(np.arange(n_users), prepend=0)),
        "targets_per_user": encode_integers(np.ones(n_users, dtype=np.int64)), "all": encode_integers(ranks)}
    if "users_warm" in record or "users_cold" in record:
        warm = np.zeros(n_users, dtype=bool)
        warm[np.asarray(record.get("users_warm", []), dtype=np.int64)] = True
        block["partitions"] = {"warm": encode_integers(warm)}
        if "per_user_warm_in_group" in record or "per_user_cold_in_group" in record:
            in_group = np.full(n_users, -1, dtype=np.int64)
            for side in ("warm", "cold"):
                if f"per_user_{side}_in_group" in record:
                    users = np.asarray(record[f"users_{side}"], dtype=np.int64)
                    in_group[users] = _ranks_below_cutoff(record[f"per_user_{side}_in_group"], max(cutoffs))
            block["in_group"] = encode_integers(in_group)
    if "users_repeat" in record:
        repeat = np.zeros(n_users, dtype=bool)
        repeat[np.asarray(record["users_repeat"], dtype=np.int64)] = True
        block.setdefault("partitions", {})["repeat"] = encode_integers(repeat)
    return block
