"""A record stores ranks; the per-user values read back equal those the evaluator computed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.errors import BenchError
from bench.evaluation.metrics import MISSING
from bench.evaluation.protocol import PhaseResult
from bench.evaluation.stored_ranks import (decode_integers, encode_integers, per_user_fields, ranks_block,
                                           ranks_block_from_values)
from bench.results import read_record, write_record

DEMO_RECORDS = sorted((Path(__file__).resolve().parents[2] / "results" / "demo").rglob("*.json"))


def fields_as_written_before(result: PhaseResult) -> dict[str, Any]:
    """The per-user fields as records held them before ranks were stored (and as JSON reads them)."""
    def rounded(per_user: dict[str, np.ndarray]) -> dict[str, list[float]]:
        return {name: np.round(values, 6).tolist() for name, values in per_user.items()}

    fields: dict[str, Any] = {"per_user": rounded(result.per_user)}
    if result.reports_groups:
        for label, subset, in_group in (("warm", result.warm, result.warm_in_group),
                                        ("cold", result.cold, result.cold_in_group)):
            if subset is not None:
                fields[f"users_{label}"] = subset.users.tolist()
                fields[f"per_user_{label}"] = rounded(subset.per_user)
            if in_group is not None:
                fields[f"per_user_{label}_in_group"] = rounded(in_group.per_user)
    return json.loads(json.dumps(fields))


def assert_stored_ranks_reproduce(result: PhaseResult) -> None:
    stored = json.loads(json.dumps(ranks_block(result)))
    assert per_user_fields(stored) == fields_as_written_before(result)


@pytest.mark.parametrize("values", [[], [0, 5, -1], [300, -2], [70_000, 0], [2**40, -(2**40)]])
def test_integers_survive_their_encoding_in_the_smallest_width(values):
    text = encode_integers(np.asarray(values, dtype=np.int64))
    assert decode_integers(text).tolist() == values
    width = 1 if max(map(abs, values), default=0) < 128 else 2 if max(map(abs, values)) < 32768 else None
    if width:
        assert text.startswith(f"i{width}:")


def test_a_damaged_integer_array_is_one_error():
    with pytest.raises(BenchError, match="not an encoded integer array"):
        decode_integers("i2:not base64!")


def test_missing_ranks_several_targets_and_both_groups_come_back(tmp_path):
    """Two users, three targets: a missing rank, a cold target, in-group ranks; written and read as a record."""
    from bench.evaluation.metrics import subset_metrics, user_metrics

    users, owners = np.array([3, 7]), np.array([0, 0, 1])
    ranks, group_ranks = np.array([1, MISSING, 12]), np.array([1, 0, 2])
    warm = np.array([True, False, True])
    cutoffs = (5, 10)

    def group(chosen, source):
        return subset_metrics(users, source, owners, chosen, cutoffs, False)

    result = PhaseResult(users=users, per_user=user_metrics(ranks, owners, 2, cutoffs, False), ranks=ranks,
                         owners=owners, tied_users=0, tied_items_total=0, warm=group(warm, ranks),
                         cold=group(~warm, ranks), inference_seconds=0.0, reports_groups=True,
                         warm_in_group=group(warm, group_ranks), cold_in_group=group(~warm, group_ranks),
                         single_target=False, cutoffs=cutoffs, warm_targets=warm, group_ranks=group_ranks)
    assert_stored_ranks_reproduce(result)
    record = {"run_id": "r1", "method": "m", "dataset": "d", "split": {}, "metrics": {},
              "ranks": ranks_block(result)}
    read = read_record(write_record(tmp_path, record))
    assert read["users_cold"] == [3] and read["per_user_cold_in_group"]["Recall@5"] == [1.0]
    assert read["per_user"]["Recall@10"] == [0.5, 0.0]


def test_a_record_with_a_damaged_ranks_block_is_one_error(tmp_path):
    path = write_record(tmp_path, {"run_id": "r1", "method": "m", "dataset": "d", "split": {}, "metrics": {},
                                   "ranks": {"format": 1, "cutoffs": [5], "several_targets": False}})
    record = read_record(path)  # the ranks are decoded when per-user values are first asked for
    assert record["metrics"] == {}
    with pytest.raises(BenchError, match=r"r1\.json: run record's 'ranks' cannot be read: 'user_steps'"):
        record["per_user"]


@pytest.mark.parametrize("path", DEMO_RECORDS, ids=lambda p: p.parent.name)
def test_committed_demo_records_convert_to_ranks_that_give_their_values(path):
    """Every method's committed demo record, converted from its per-user values to ranks, reads back
    to the values it stores (ranks below the largest cutoff are exact)."""
    record = read_record(path)
    derived = per_user_fields(json.loads(json.dumps(ranks_block_from_values(record))))
    assert derived == {key: record[key] for key in derived}
    assert set(derived) == {key for key in record if key.startswith(("per_user", "users_"))}


def test_only_one_target_records_convert():
    record = {"run_id": "r", "split": {"protocol": "temporal"}, "per_user": {"Recall@5": [1.0]}}
    with pytest.raises(BenchError, match="only one-target"):
        ranks_block_from_values(record)
