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


def test_a_record_gets_the_permissions_of_any_new_file(tmp_path):
    """Others on a shared machine read the store as they read files made with open()."""
    import os

    mask = os.umask(0o027)
    try:
        path = write_record(tmp_path, _record())
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o640


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


@pytest.fixture
def read_only_store():
    """A store folder nobody may write in; root, whom permissions do not stop, writes there as
    user nobody (the effective user id only, so the test process gets root back)."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    outer = Path(tempfile.mkdtemp(prefix="read-only-store-"))  # traversable by nobody, unlike tmp_path
    outer.chmod(0o755)
    store = outer / "results"
    store.mkdir(mode=0o555)
    store.chmod(0o555)
    as_root = os.geteuid() == 0
    if as_root:
        os.seteuid(65534)
    try:
        yield store
    finally:
        if as_root:
            os.seteuid(0)
        store.chmod(0o755)
        shutil.rmtree(outer)


def test_a_read_only_store_gives_one_line_and_no_file(read_only_store):
    with pytest.raises(BenchError) as refused:
        write_record(read_only_store, _record())
    message = str(refused.value)
    assert "\n" not in message and f"{read_only_store / 'demo' / 'pop'}: cannot write in this folder (Permission denied)" \
        in message and "the same command writes the record" in message
    assert list(read_only_store.rglob("*")) == []


def test_a_full_disk_during_the_write_gives_one_line_and_no_partial_file(tmp_path, monkeypatch):
    import errno
    import os

    def full_disk(descriptor):  # the bytes went to the page cache; the disk refuses them
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("bench.storage.os.fsync", full_disk)
    with pytest.raises(BenchError, match=r"pop-abc123\.json: cannot be written \(No space left on device\); "
                                         "nothing was written; the run's work folder keeps what it trained"):
        write_record(tmp_path, _record())
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
