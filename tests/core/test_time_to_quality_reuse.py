"""time_to_quality.py reads a path's record again only when it ran exactly that path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = "../shared/data/amazon-toys-p5-order"


def _script():
    spec = importlib.util.spec_from_file_location("time_to_quality", ROOT / "benchmarks" / "time_to_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(results: Path, name: str, options: dict, source: str = DATA) -> Path:
    path = results / "toys" / "p5-cid" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": {"method": options}, "dataset_source": {"source": source}}))
    return path


def test_a_path_finds_only_the_record_of_its_own_resolved_options(tmp_path: Path) -> None:
    script = _script()
    today = {**script.COMMON, **script.TODAY["p5-cid"], "epochs": "2"}
    new = {**script.COMMON, **script.NEW["p5-cid"], "epochs": "4"}
    ran_today = dict(script._options("p5-cid", today)[0])
    del ran_today["output_head"]  # at its default a record omits it (omitted_at_default)
    _write(tmp_path, "20260101T000001-today", ran_today)
    ran_new = script._options("p5-cid", new)[0]
    assert ran_new["precision"] in ("bf16", "fp32")  # "auto" made concrete, as the record holds it
    _write(tmp_path, "20260101T000002-new", ran_new)
    _write(tmp_path, "20260101T000003-other-data", ran_new, source="elsewhere")

    assert script.earlier_record("p5-cid", "toys", DATA, today, tmp_path).stem == "20260101T000001-today"
    assert script.earlier_record("p5-cid", "toys", DATA, new, tmp_path).stem == "20260101T000002-new"
    # The new path's stop at the target: a run that went on reached it at the same epoch.
    stopped = {**new, "target_validation": "0.0088"}
    assert script.earlier_record("p5-cid", "toys", DATA, stopped, tmp_path).stem == "20260101T000002-new"
    # One option apart, another data folder, or the record's omitted default against the
    # profile's value: not the same path.
    assert script.earlier_record("p5-cid", "toys", DATA, {**new, "max_history": "20"}, tmp_path) is None
    assert script.earlier_record("p5-cid", "toys", "elsewhere", {**new, "epochs": "2"}, tmp_path) is None
    assert script.earlier_record("p5-cid", "toys", DATA, {**today, "output_head": "id_tokens"}, tmp_path) is None
