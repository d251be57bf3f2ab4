"""A store of 5,000 records: `bench table standard` and `bench report` within the goal.

The goal is measured as the CPU seconds the command's process spends (imports included), since
its wall time on a shared machine depends on what else runs there (benchmarks/README.md,
"A store at scale", has both).
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from store_scale import build_store  # noqa: E402 (the benchmark's own store)


def cpu_seconds_of(arguments: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = subprocess.run([sys.executable, "-m", "bench.cli", *arguments], capture_output=True, text=True,
                              cwd=ROOT, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_five_thousand_records_render_within_the_goal(tmp_path):
    results = tmp_path / "results"
    build_store(results, 5000)
    assert len(list(results.rglob("*.json"))) == 5000
    assert cpu_seconds_of(["table", "standard", "--results-dir", str(results)]) < 5
    assert cpu_seconds_of(["report", "--results-dir", str(results), "--out", str(tmp_path / "report"),
                           "--quiet"]) < 60
    assert (tmp_path / "report" / "index.html").is_file()
