import json

import numpy as np
import pytest

from bench.errors import BenchError
from bench.results import find_record, read_record, write_record


def _record(run_id="20260101T000000-pop-abc123"):
    return {"run_id": run_id, "method": "pop", "dataset": "demo", "metrics": {"HR@5": 0.1},
            "per_user": {"HR@5": np.array([0.0, 1.0])}, "split": {"digest": "x"}}


def test_record_round_trip_and_lookup_by_id(tmp_path):
    path = write_record(tmp_path, _record())
    assert read_record(path)["per_user"]["HR@5"] == [0.0, 1.0]
    assert find_record(tmp_path, "20260101T000000")["run_id"] == "20260101T000000-pop-abc123"


def test_a_failed_write_leaves_nothing(tmp_path):
    record = _record()
    record["unstorable"] = object()
    with pytest.raises(TypeError):
        write_record(tmp_path, record)
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.tmp"))


def test_corrupt_record_names_the_file(tmp_path):
    path = tmp_path / "demo" / "pop" / "bad.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(BenchError, match="bad.json:1"):
        read_record(path)
    path.write_text(json.dumps({"run_id": "x"}))
    with pytest.raises(BenchError, match="lacks key 'method'"):
        read_record(path)
