"""Records keep no absolute path of the machine that wrote them (bench.portable_paths)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.portable_paths import local_path, portable, portable_path


def test_cache_and_neighbouring_paths_become_portable_and_others_stay(tmp_path: Path) -> None:
    project, cache = tmp_path / "checkout", tmp_path / "home" / "cache"
    assert portable_path(str(cache / "work" / "run-1" / "run.log"), project, cache) == \
        "$GENREC_BENCH_CACHE/work/run-1/run.log"
    assert portable_path(str(tmp_path / "shared" / "data" / "toys"), project, cache) == "../shared/data/toys"
    assert portable_path(str(project / "results" / "x.json"), project, cache) == "results/x.json"
    assert portable_path("/elsewhere/data", project, cache) == "/elsewhere/data"
    assert portable_path("title: a/b", project, cache) == "title: a/b"
    nested = {"source": str(tmp_path / "shared" / "d"), "files": [str(cache / "a")], "n": 3}
    assert portable(nested, project, cache) == {"source": "../shared/d", "files": ["$GENREC_BENCH_CACHE/a"], "n": 3}


def test_a_run_record_holds_no_path_of_this_machine(tmp_path: Path, monkeypatch) -> None:
    from bench.runner import RunRequest, execute

    cache = tmp_path / "cache"
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(cache))
    path = execute(RunRequest(method="pop", dataset="demo", results_dir=tmp_path / "results", show_progress=False), log=lambda _: None)
    text = Path(path).read_text()
    assert str(tmp_path) not in text
    log_file = json.loads(text)["log_file"]
    assert log_file.startswith("$GENREC_BENCH_CACHE/work/")
    assert local_path(log_file).is_file() and local_path(log_file).is_relative_to(cache)
