"""The CLI end to end (subprocesses, as a user runs it), and every bad-input class."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import read_record

PROJECT = Path(__file__).resolve().parents[1]


def bench(*args: str, env_extra: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or PROJECT, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_run_pop_on_demo_writes_a_whole_record(tmp_path):
    result = bench("run", "--method", "pop", "--dataset", "demo", "--results-dir", str(tmp_path / "r"), "--quiet")
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    record = read_record(path)
    assert path.parent == tmp_path / "r" / "demo" / "pop"
    assert set(record["metrics"]) == {"HR@5", "NDCG@5", "HR@10", "NDCG@10"}
    assert len(record["per_user"]["HR@10"]) == record["dataset_summary"]["users"]
    for key in ("config", "seed", "versions", "git_commit", "wall_time_seconds", "split", "profile"):
        assert key in record
    assert record["config"]["eval"]["mask_history"] is False


@pytest.mark.parametrize("args, fragments", [
    (["run", "--method", "sasrek", "--dataset", "demo"], ["unknown method 'sasrek'"]),
    (["run", "--method", "pop", "--dataset", "toyz"], ["unknown dataset 'toyz'", "did you mean 'toys'"]),
    (["run", "--method", "pop", "--dataset", "demo", "--set", "epochs=3"], ["unknown config key 'epochs'", "'pop'"]),
    (["run", "--method", "pop", "--dataset", "demo", "--set", "eval.mask=1"], ["unknown config key 'mask'"]),
    (["run", "--method", "pop", "--dataset", "toys", "--data-dir", "/nonexistent/folder"], ["data directory not found"]),
    (["table", "nonsense"], ["unknown table 'nonsense'"]),
    (["compare", "nope", "nada"], ["'nope'"]),
    (["run", "--method", "pop"], ["--dataset"]),
])
def test_bad_input_gives_one_line_error_and_no_output(tmp_path, args, fragments):
    results = tmp_path / "r"
    result = bench(*args, "--results-dir", str(results))
    assert_one_line_error(result, *fragments)
    assert not results.exists() or not any(results.rglob("*.json"))


def test_malformed_data_file_names_file_and_line_and_leaves_no_cache(tmp_path):
    folder = tmp_path / "toys"
    folder.mkdir()
    (folder / "user_sequence.txt").write_text("u1 A B C\nu2\n")
    cache = tmp_path / "cache"
    result = bench("run", "--method", "pop", "--dataset", "toys", "--data-dir", str(folder),
                   "--results-dir", str(tmp_path / "r"), env_extra={"GENREC_BENCH_CACHE": str(cache)})
    assert_one_line_error(result, "user_sequence.txt:2", "no items")
    assert not list((cache / "prepared").glob("*")) if (cache / "prepared").exists() else True
    assert not (tmp_path / "r").exists()


def test_missing_sequence_file_is_named(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "datamaps.json").write_text("{}")
    result = bench("run", "--method", "pop", "--dataset", "demo", "--results-dir", str(tmp_path / "r"),
                   "--config", str(folder / "missing.toml"))
    assert_one_line_error(result, "missing.toml", "not found")


def test_short_users_are_dropped_with_a_visible_count(tmp_path):
    folder = tmp_path / "toys"
    folder.mkdir()
    (folder / "user_sequence.txt").write_text("u1 A B C D\nu2 A B\nu3 B C D A\n")
    result = bench("run", "--method", "pop", "--dataset", "toys", "--data-dir", str(folder), "--quiet",
                   "--results-dir", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "dropped 1 users with fewer than 3 interactions" in result.stderr
    record = read_record(Path(result.stdout.strip().splitlines()[-1]))
    assert record["dataset_source"]["dropped_users_fewer_than_3"] == 1
    assert len(record["per_user"]["HR@5"]) == 2


def test_compare_and_table_read_the_store(tmp_path):
    results = tmp_path / "r"
    paths = []
    for seed in ("1", "2"):
        run = bench("run", "--method", "pop", "--dataset", "demo", "--results-dir", str(results), "--quiet",
                    "--seed", seed)
        assert run.returncode == 0, run.stderr
        paths.append(run.stdout.strip().splitlines()[-1])
    compared = bench("compare", paths[0], paths[1], "--results-dir", str(results))
    assert compared.returncode == 0, compared.stderr
    assert "HR@10" in compared.stdout and "Holm p" in compared.stdout
    table = bench("table", "standard", "--results-dir", str(results), "--with-paper")
    assert table.returncode == 0, table.stderr
    assert "| Demo" in table.stdout and "Pop" in table.stdout


def test_example_plugin_registers_through_an_entry_point(tmp_path):
    """A third-party plugin, registered the way `pip install` would, runs end to end."""
    site = tmp_path / "site"
    dist_info = site / "bench_markov-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    shutil.copy(PROJECT / "examples" / "markov_plugin" / "bench_markov.py", site)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-markov\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text("[bench.methods]\nmarkov = bench_markov:FirstOrderMarkov\n")
    env = {"PYTHONPATH": str(site)}
    listed = bench("list", "methods", env_extra=env)
    assert "markov" in listed.stdout.split()
    results = tmp_path / "r"
    markov = bench("run", "--method", "markov", "--dataset", "demo", "--results-dir", str(results), "--quiet",
                   env_extra=env)
    assert markov.returncode == 0, markov.stderr
    pop = bench("run", "--method", "pop", "--dataset", "demo", "--results-dir", str(results), "--quiet")
    markov_record = json.loads(Path(markov.stdout.strip().splitlines()[-1]).read_text())
    pop_record = json.loads(Path(pop.stdout.strip().splitlines()[-1]).read_text())
    # The demo data is sequential on purpose: a sequence model must clearly beat popularity.
    assert markov_record["metrics"]["HR@10"] > 2 * pop_record["metrics"]["HR@10"]
    # Its own Table 4 column, declared on its class: no edit to the harness.
    table = bench("table", "standard", "--results-dir", str(results), "--format", "csv", env_extra=env)
    assert table.returncode == 0, table.stderr
    rows = [row for row in csv.DictReader(io.StringIO(table.stdout)) if row["metric"] == "HR@10"]
    markov_cell = next(row for row in rows if row["method"] == "Markov")
    assert markov_cell["run_id"] == markov_record["run_id"]
    assert float(markov_cell["value"]) == pytest.approx(markov_record["metrics"]["HR@10"], abs=1e-6)
    assert "| Markov" in bench("table", "standard", "--results-dir", str(results), env_extra=env).stdout
    # A second configuration without a validation score: the cell keeps the default one, and says why.
    other = bench("run", "--method", "markov", "--dataset", "demo", "--results-dir", str(results), "--quiet",
                  "--set", "popularity_weight=0.01", env_extra=env)
    assert other.returncode == 0, other.stderr
    explained = bench("table", "standard", "--explain", "--results-dir", str(results), env_extra=env).stdout
    markov_lines = explained[explained.index("  Markov:"):].splitlines()
    assert "default configuration" in markov_lines[0] and "popularity_weight" in markov_lines[0]
    assert markov_record["run_id"] in markov_lines[1] and "chosen" in markov_lines[1]


def test_ids_show_prints_a_sample_and_exports_every_id(tmp_path):
    results = tmp_path / "r"
    table = tmp_path / "work" / "ids.tsv"
    table.parent.mkdir()
    rows = [f"i{n}\tthing {n}\tthing number {n}\ttitle: thing number {n}; categories: toys" for n in range(30)]
    table.write_text("item\tinitial_id\tfinal_id\ttext\n" + "\n".join(rows) + "\n")
    record = {"run_id": "20260101T000000-idgenrec-abc123", "method": "idgenrec", "dataset": "demo",
              "started_at": "2026-01-01T00:00:00+00:00", "metrics": {}, "config": {"method": {}, "eval": {}},
              "per_user": {}, "split": {}, "schema": 1,
              "method_metadata": {"ids_file": str(table)}}
    (results / "demo" / "idgenrec").mkdir(parents=True)
    (results / "demo" / "idgenrec" / f"{record['run_id']}.json").write_text(json.dumps(record))

    result = bench("ids", "show", "--dataset", "demo", "--sample", "5", "--results-dir", str(results))
    assert result.returncode == 0, result.stderr
    assert "30 items" in result.stdout and result.stdout.count("thing number") >= 5
    exported = results / "demo" / "idgenrec" / f"{record['run_id']}.ids.tsv"
    assert exported.read_text().splitlines()[1:] == rows

    table.unlink()  # the export is read once the work folder is gone
    assert bench("ids", "show", "--dataset", "demo", "--results-dir", str(results)).returncode == 0
    assert_one_line_error(bench("ids", "show", "--dataset", "toys", "--results-dir", str(results)),
                          "no run of 'idgenrec' on 'toys'")


def test_table_help_names_every_table():
    from bench.tables import table_registry

    result = bench("table", "--help")
    assert result.returncode == 0
    assert all(name in result.stdout for name in table_registry().names())


def test_a_full_store_disk_ends_the_run_with_one_line_and_no_record(tmp_path, monkeypatch, capsys):
    """The disk fills while the record is written (an injected ENOSPC): one error line, exit 2, no file."""
    import errno

    from bench import results, storage
    from bench.cli import main

    real_write = results.atomic_write_text

    def write_on_a_full_disk(path, text):
        def full(descriptor):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        with monkeypatch.context() as patch:
            patch.setattr(storage.os, "fsync", full)
            real_write(path, text)

    monkeypatch.setattr(results, "atomic_write_text", write_on_a_full_disk)
    store = tmp_path / "r"
    monkeypatch.setattr(sys, "argv", ["bench", "run", "--method", "pop", "--dataset", "demo", "--quiet",
                                      "--results-dir", str(store)])
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: run record not written: ") and "(No space left on device)" in line
    assert [path for path in store.rglob("*") if path.is_file()] == []
