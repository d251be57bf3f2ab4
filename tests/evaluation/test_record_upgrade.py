"""A record made before ranks were stored, upgraded: its ranks give back its per-user values, and
the repeat/novel blocks equal those the evaluator writes today; a folder with other data is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.record_upgrade import upgrade_record_file
from bench.results import DERIVED_PREFIXES, read_record

# The committed demo record of the most-recent-item baseline: demo has repeat targets.
RECENT_DEMO = next((Path(__file__).resolve().parents[2] / "results" / "demo" / "recent").glob("*.json"))
REPEAT_KEYS = ("repeat_novel", "metrics_repeat", "metrics_novel")


def as_written_before_ranks(path: Path, destination: Path) -> dict:
    """The record as the harness wrote it before ranks and the repeat/novel partition."""
    record = read_record(path)
    old = {key: value for key, value in record.items()
           if key != "ranks" and key not in REPEAT_KEYS and not key.startswith(("users_repeat", "users_novel",
                                                                              "per_user_repeat", "per_user_novel"))}
    destination.write_text(json.dumps(old))
    return dict(record)


def test_an_old_record_gets_ranks_and_the_repeat_novel_blocks(tmp_path):
    old_path = tmp_path / "old.json"
    today = as_written_before_ranks(RECENT_DEMO, old_path)
    assert "per_user" in json.loads(old_path.read_text())
    upgraded = upgrade_record_file(old_path, None)
    stored = json.loads(old_path.read_text())
    assert "ranks" in stored and not any(key.startswith(DERIVED_PREFIXES) for key in stored)
    for key in REPEAT_KEYS:
        assert upgraded[key] == today[key]
    again = read_record(old_path)
    for key in ("per_user", "per_user_repeat", "users_repeat", "per_user_novel", "users_novel",
                "per_user_warm", "users_warm"):
        if key in today:
            assert again[key] == today[key], key
    with pytest.raises(BenchError, match="already stores ranks"):
        upgrade_record_file(old_path, None)


def test_a_folder_with_other_data_is_refused_and_the_record_is_kept(tmp_path):
    old_path = tmp_path / "old.json"
    as_written_before_ranks(RECENT_DEMO, old_path)
    record = json.loads(old_path.read_text())
    record["split"]["digest"] = "0000000000000000"
    old_path.write_text(json.dumps(record))
    before = old_path.read_bytes()
    with pytest.raises(BenchError, match="not the data the record was evaluated on"):
        upgrade_record_file(old_path, None)
    assert old_path.read_bytes() == before
