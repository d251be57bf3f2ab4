"""``bench sweep``: the grid a file describes, skipping done runs, failures, both executors."""

from __future__ import annotations

import io
import os
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.identity import record_identity
from bench.sweep import RunTask, SweepPlan, load_sweep, plan_sweep, select_points, summary_lines, work_folder_state
from bench.sweep_executors import LocalExecutor, Progress, SubmititExecutor, run_sweep
PROJECT = Path(__file__).resolve().parents[1]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT, timeout=900)

DEMO_SWEEP = """
methods = ["pop", "gru4rec"]
datasets = ["demo"]
seeds = [1, 2]

[set.gru4rec]
epochs = 1
threads = 1
train_batch_size = 512
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def records_in(results: Path) -> list[Path]:
    return sorted(results.rglob("*.json")) if results.exists() else []


def test_grid_expands_lists_groups_and_per_method_tables(tmp_path):
    spec = load_sweep(write(tmp_path, """
        name = "grid"
        methods = ["pop", "sasrec"]
        datasets = ["demo"]
        seeds = [1, 2]
        [set]
        "eval.mask_history" = [false, true]
        [set.sasrec]
        threads = 1
        n_layers = [1, 2]
        [[group]]
        name = "bpr"
        methods = ["sasrec"]
        seeds = [7]
        [group.set]
        loss_type = "BPR"
        """))
    assert spec.name == "grid"
    # pop: 2 masks x 2 seeds; sasrec: 2 masks x 2 layer counts x 2 seeds; bpr group: 2 x 2 x 1 seed
    assert len(spec.points) == 4 + 8 + 4
    bpr = [p for p in spec.points if p.group == "bpr"]
    assert {dict(p.sets)["loss_type"] for p in bpr} == {"BPR"} and {p.seed for p in bpr} == {7}
    assert all("threads" not in dict(p.sets) for p in spec.points if p.method == "pop")
    labels = {p.label for p in spec.points}
    assert "[bpr] sasrec on demo (seed 7, eval.mask_history=True, n_layers=2)" in labels
    # --only: a slice of the grid (all filters hold), e.g. one method's runs on another machine
    sasrec_ce = select_points(spec, ["method=sasrec", "seed=1,2"]).points
    assert len(sasrec_ce) == 8 and {(p.method, p.group) for p in sasrec_ce} == {("sasrec", "")}
    assert len(select_points(spec, ["group=bpr"]).points) == 4
    with pytest.raises(BenchError, match=r"--only method=tiger: no run of sweep grid .* its method values are pop, sasrec"):
        select_points(spec, ["method=tiger"])
    with pytest.raises(BenchError, match="expected FIELD=VALUE"):
        select_points(spec, ["model=sasrec"])


@pytest.mark.parametrize("text, fragment", [
    ('methods = ["pop"]\ndatasets = ["demo"]\nseed = [1]\n', "unknown key 'seed' in the sweep file (did you mean 'seeds'?)"),
    ('methods = ["pop"]\ndatasets = ["demo"]\nseeds = ["one"]\n', "'seeds' must be a non-empty list of integers"),
    ('datasets = ["demo"]\n', "the sweep has no runs"),
    ('methods = ["pop"]\ndatasets = ["demo"]\n[set.gru4rec]\nepochs = 1\n', "'gru4rec' is not a method of this sweep"),
    ('methods = ["pop"]\ndatasets = ["demo"]\n[slurm]\ngpus = 1\n', "unknown key 'gpus' in [slurm]"),
    ('methods = ["pop"]\ndatasets = ["demo"]\n[slurm]\ncpus_per_job = 0\n', "'cpus_per_job' must be at least 1"),
    ('methods = ["pop"\n', "not a valid TOML file"),
])
def test_bad_sweep_file_is_refused_naming_the_file(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(BenchError, match="sweep.toml") as error:
        load_sweep(path)
    assert fragment in str(error.value)


def test_unknown_config_key_names_the_file_and_the_run(tmp_path):
    spec = load_sweep(write(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\nseeds = [3]\n[set]\nepochs = 1\n'))
    with pytest.raises(BenchError, match=r"sweep.toml: pop on demo \(seed 3\): unknown config key 'epochs'"):
        plan_sweep(spec, tmp_path / "results")


def test_demo_sweep_makes_four_records_then_none_and_table_shows_mean_and_std(tmp_path):
    sweep, results = write(tmp_path, DEMO_SWEEP), tmp_path / "results"
    first = bench("sweep", str(sweep), "--jobs", "2", "--results-dir", str(results))
    assert first.returncode == 0, first.stderr + first.stdout
    made = records_in(results)
    assert len(made) == 4
    assert sorted((json.loads(p.read_text())["method"], json.loads(p.read_text())["seed"]) for p in made) == [
        ("gru4rec", 1), ("gru4rec", 2), ("pop", 1), ("pop", 2)]
    assert "4 runs: 0 already done, 4 finished, 0 failed" in first.stdout
    assert "sweep: 4/4 done, 0 running, 0 failed" in first.stderr
    gru4rec = [json.loads(p.read_text()) for p in made if "gru4rec" in p.name]
    second = bench("sweep", str(sweep), "--jobs", "2", "--results-dir", str(results))
    assert second.returncode == 0, second.stderr
    assert "4 runs: 4 already done, 0 finished, 0 failed" in second.stdout
    assert records_in(results) == made
    table = bench("table", "standard", "--results-dir", str(results))
    demo_rows = [line for line in table.stdout.splitlines() if line.startswith("| Demo")]
    assert len(demo_rows) == 4 and all(line.count(" ± ") == 2 for line in demo_rows), table.stdout
    hr10 = [g["metrics"]["HR@10"] for g in gru4rec]
    mean = sum(hr10) / 2
    assert f"{mean:.4f} ± " in table.stdout
    # compare: one run of each side stands for its seed group; or the group is spelled out with '+'.
    pop = next(json.loads(p.read_text()) for p in made if "-pop-" in p.name)
    grouped = bench("compare", gru4rec[0]["run_id"], pop["run_id"], "--seed-group", "--results-dir", str(results))
    spelled = bench("compare", "+".join(g["run_id"] for g in gru4rec), pop["run_id"], "--seed-group",
                    "--results-dir", str(results))
    assert grouped.returncode == 0, grouped.stderr
    assert "pop (seeds 1, 2)" in grouped.stdout and f"{mean:.4f} ± " in grouped.stdout
    assert spelled.stdout == grouped.stdout


def test_entries_that_resolve_to_the_same_run_run_once(tmp_path):
    """A list value equal to the default, and a group repeating it: three entries, one configuration."""
    spec = load_sweep(write(tmp_path, """
        name = "twins"
        methods = ["pop"]
        datasets = ["demo"]
        seeds = [4]
        [set]
        "eval.mask_history" = [false]
        [[group]]
        name = "again"
        methods = ["pop"]
        seeds = [4]
        [group.set]
        "eval.cutoffs" = [[5, 10]]
        """))
    assert len(spec.points) == 2
    plan = plan_sweep(spec, tmp_path / "results")
    assert len(plan.tasks) == 1
    outcomes = run_sweep(plan, LocalExecutor(jobs=2), echo=lambda line: None)
    assert [o.status for o in outcomes] == ["finished"]
    assert len(records_in(tmp_path / "results")) == 1
    assert summary_lines(plan, outcomes)[0] == ("sweep twins: 1 runs: 0 already done, 1 finished, 0 failed "
                                               "(1 more entries of the file resolve to one of these runs: each ran once)")


def test_worker_log_shows_thread_budget_and_sits_in_the_run_work_folder(tmp_path):
    spec = load_sweep(write(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\nseeds = [5]\n'))
    plan = plan_sweep(spec, tmp_path / "results")
    outcomes = run_sweep(plan, LocalExecutor(jobs=2, cores=2), echo=lambda line: None)
    assert [o.status for o in outcomes] == ["finished"]
    log = Path(outcomes[0].log_path).read_text()
    assert "torch threads: 1" in log and "record: " in log
    # The same folder `bench run` resumes from: the runner keyed it by the same request.
    assert Path(outcomes[0].log_path).parent.name.startswith("pop-demo-")
    record = json.loads(Path(outcomes[0].record).read_text())
    assert record_identity(record) == plan.tasks[0].identity


def test_cpus_per_job_sets_each_local_runs_thread_budget(tmp_path):
    """Two sweeps side by side on one machine would each split all its cores: the flag says how
    many each run gets."""
    assert LocalExecutor(jobs=1, cores=8).threads_per_run == 8
    assert LocalExecutor(jobs=1, cores=8, cores_per_run=1).threads_per_run == 1
    assert LocalExecutor(jobs=2, cores=8, cores_per_run=3).threads_per_run == 3
    with pytest.raises(BenchError, match="--cpus-per-job must be at least 1"):
        LocalExecutor(jobs=1, cores_per_run=0)
    sweep = write(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\nseeds = [3]\n')
    result = bench("sweep", str(sweep), "--cpus-per-job", "3", "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    plan = plan_sweep(load_sweep(sweep), tmp_path / "results")
    assert "3 thread(s)" in Path(plan.tasks[0].log_path).read_text()


def test_a_failed_run_does_not_stop_the_others(tmp_path):
    spec = load_sweep(write(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\nseeds = [1]\n'))
    plan = plan_sweep(spec, tmp_path / "results")
    good = plan.tasks[0]
    broken = RunTask(label="nothing on demo (seed 1)", method="no-such-method", dataset="demo", data_dir=None,
                     sets=(), seed=1, profile="cpu", results_dir=good.results_dir, identity="broken",
                     log_path=str(tmp_path / "broken" / "sweep.log"), threads_asked=None)
    plan = SweepPlan(spec=spec, tasks=[broken, good], done={})
    outcomes = {o.identity: o for o in run_sweep(plan, LocalExecutor(jobs=2), echo=lambda line: None)}
    assert outcomes["broken"].status == "failed"
    assert outcomes["broken"].error.startswith("error: unknown method 'no-such-method'")
    assert "unknown method" in Path(outcomes["broken"].log_path).read_text()
    assert outcomes[good.identity].status == "finished" and Path(outcomes[good.identity].record).is_file()
    summary = "\n".join(summary_lines(plan, list(outcomes.values())))
    assert "1 finished, 1 failed" in summary
    assert "FAILED    nothing on demo (seed 1): error: unknown method" in summary
    assert f"log: {tmp_path / 'broken' / 'sweep.log'}" in summary


def test_cli_exit_code_is_non_zero_when_a_run_fails(tmp_path):
    # A file where the store's dataset folder should be: each run trains, then cannot write its record.
    sweep = write(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\nseeds = [1]\n')
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "demo").write_text("not a folder")
    result = bench("sweep", str(sweep), "--results-dir", str(tmp_path / "results"))
    assert result.returncode != 0
    assert "0 finished, 1 failed" in result.stdout and result.stdout.count("log: ") == 1
    assert "FAILED    pop on demo (seed 1): error: run record not written: " in result.stdout  # the store is a file
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 1 runs of sweep sweep failed")


def test_sweep_through_submitit_local_executor(tmp_path):
    spec = load_sweep(write(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\nseeds = [1, 2]\n'
                                      '[slurm]\ntime_minutes = 5\ncpus_per_job = 1\npartition = "gpu"\n'))
    results = tmp_path / "results"
    plan = plan_sweep(spec, results)
    executor = SubmititExecutor(spec.slurm, tmp_path / "submitit", cluster="local", poll_seconds=0.2)
    assert executor.parameters()["slurm_partition"] == "gpu"
    outcomes = run_sweep(plan, executor, echo=lambda line: None)
    assert sorted(o.status for o in outcomes) == ["finished", "finished"]
    assert len(records_in(results)) == 2
    assert any((tmp_path / "submitit").rglob("*_result.pkl"))
    assert plan_sweep(spec, results).todo == []


def test_progress_line_counts_and_eta():
    stream = io.StringIO()
    progress = Progress(total=4, already_done=1, slots=1, stream=stream)
    tasks = [RunTask(label=str(i), method="pop", dataset="demo", data_dir=None, sets=(), seed=i, profile="cpu",
                     results_dir="r", identity=str(i), log_path="l", threads_asked=None) for i in range(3)]
    progress.started(tasks[0])
    assert stream.getvalue().splitlines()[-1] == "sweep: 1/4 done, 1 running, 0 failed, ETA ?"
    from bench.sweep import RunOutcome
    progress.finished(RunOutcome("0", "0", "failed", None, "boom", "l", seconds=60.0))
    progress.started(tasks[1])
    # One run took 60 s; two remain (one just started) on one slot: about two minutes.
    assert stream.getvalue().splitlines()[-1] == "sweep: 1/4 done, 1 running, 1 failed, ETA 2m00s"


def test_launcher_arguments_resolve_to_the_same_run(tmp_path):
    """A multi-GPU job starts `bench run` with these arguments: they must name the same run."""
    from bench.config import parse_sets
    from bench.runner import RunRequest, resolve_run_config

    spec = load_sweep(write(tmp_path, """
        methods = ["sasrec"]
        datasets = ["demo"]
        seeds = [3]
        [set]
        threads = 1
        max_train_minutes = 1.5
        "eval.mask_history" = true
        "eval.cutoffs" = [[5, 20]]
        """))
    task = plan_sweep(spec, tmp_path / "results").tasks[0]
    arguments = task.run_arguments()
    sets = parse_sets(arguments[i + 1] for i, word in enumerate(arguments) if word == "--set")
    assert arguments[:2] == ["run", "--method"] and "--quiet" in arguments
    _, from_arguments = resolve_run_config(RunRequest(method="sasrec", dataset="demo", sets=sets, seed=3))
    _, from_sweep = resolve_run_config(task.request())
    assert from_arguments.to_dict() == from_sweep.to_dict()
    assert from_sweep.evaluation.cutoffs == (5, 20) and from_sweep.evaluation.mask_history is True


def test_a_run_held_by_another_run_is_not_started_twice(tmp_path):
    from bench.run_guard import work_folder_lock

    spec = load_sweep(write(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\nseeds = [8]\n'))
    plan = plan_sweep(spec, tmp_path / "results")
    work_dir = Path(plan.tasks[0].log_path).parent
    work_dir.mkdir(parents=True)
    with work_folder_lock(work_dir, wait=False, say=print):  # another sweep's worker, or a `bench run`, holds it
        outcomes = run_sweep(plan, LocalExecutor(jobs=1), echo=lambda line: None)
    assert [o.status for o in outcomes] == ["failed"]
    assert "is in use by another run of this configuration (host" in outcomes[0].error
    assert records_in(tmp_path / "results") == []


def test_dry_run_says_where_a_started_run_will_resume(tmp_path):
    folder = tmp_path / "work" / "sasrec-toys-0123"
    task = RunTask(label="sasrec on toys (seed 42)", method="sasrec", dataset="toys", data_dir=None, sets=(),
                   seed=42, profile="cpu", results_dir=str(tmp_path / "results"), identity="x",
                   log_path=str(folder / "sweep.log"), threads_asked=None)
    assert work_folder_state(task) == "new"
    folder.mkdir(parents=True)
    log = folder / "run.log"
    log.write_text("2026-11-26 16:02:28,270 INFO bench.run: run log of sasrec-toys-0123\n")
    assert work_folder_state(task) == "started, no epoch logged yet"
    log.write_text(log.read_text()
                   + "2026-11-26 17:47:30,808 INFO root: epoch 9 evaluating [time: 2.51s, valid_score: 0.024000]\n"
                   + "2026-11-26 17:47:30,822 INFO root: best checkpoint so far (epoch 9): /somewhere/SASRec-best.pth\n")
    assert work_folder_state(task) == ("started, last epoch line 2026-11-26 17:47: "
                                       "epoch 9 evaluating [time: 2.51s, valid_score: 0.024000]")
    with open(log, "a") as handle:
        handle.write("2026-11-26 18:01:02,000 INFO bench.engine.training: setrec epoch 6/20: train loss 7.4832 "
                     + "x" * 300 + "\n")
    state = work_folder_state(task)
    assert state.startswith("started, last epoch line 2026-11-26 18:01: setrec epoch 6/20") and len(state) == 160


@pytest.mark.parametrize("concrete", ["bf16", "fp32"])
def test_a_precision_auto_run_logs_beside_the_run_it_resolves_to(tmp_path, monkeypatch, concrete):
    """The run's work folder is keyed by the precision ``auto`` resolves to on this machine; the
    sweep's log and the dry run's state are read there, not in a folder keyed by ``auto``."""
    monkeypatch.setattr("bench.runner.resolve_precision", lambda device, precision: concrete)
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(tmp_path / "cache"))

    def log_folder(precision: str) -> Path:
        spec = load_sweep(write(tmp_path, f"""
            methods = ["tiger"]
            datasets = ["demo"]
            [set.tiger]
            precision = "{precision}"
            """, name=f"{precision}.toml"))
        return Path(plan_sweep(spec, tmp_path / "results").tasks[0].log_path).parent

    assert log_folder("auto") == log_folder(concrete) != log_folder("bf16" if concrete == "fp32" else "fp32")


@pytest.mark.parametrize("recorded", ["bf16", "fp32", "auto"])
def test_a_record_of_what_auto_resolved_to_makes_a_precision_auto_run_done(tmp_path, monkeypatch, recorded):
    """The runner records the precision ``auto`` resolved to; the plan keeps ``auto``. A record
    of either choice (or an older one saying ``auto``) is that run's, so the sweep skips it
    instead of ranking the test users again and storing a second record."""
    monkeypatch.setenv("GENREC_BENCH_CACHE", str(tmp_path / "cache"))
    spec = load_sweep(write(tmp_path, """
        methods = ["tiger"]
        datasets = ["demo"]
        """))
    results = tmp_path / "results"
    task = plan_sweep(spec, results).tasks[0]
    template = json.loads(next((PROJECT / "results" / "demo" / "tiger").glob("*.json")).read_text())
    from bench.runner import RunRequest, resolve_run_config

    _, resolved = resolve_run_config(RunRequest(method="tiger", dataset="demo", data_dir=None, sets={}, seed=42,
                                                profile="cpu", results_dir=results))
    config = resolved.to_dict()
    assert config["method"]["precision"] == "auto"
    config["method"]["precision"] = recorded
    record = {**template, "config": config, "seed": 42}
    record["split"] = {**template["split"], "digest": _demo_digest(tmp_path)}
    (results / "demo" / "tiger").mkdir(parents=True)
    (results / "demo" / "tiger" / "20260101T000000-tiger-000000.json").write_text(json.dumps(record))
    assert list(plan_sweep(spec, results).done) == [task.identity]
    record["config"]["method"]["seed_of_nothing"] = 1  # another configuration is not this run's
    (results / "demo" / "tiger" / "20260101T000000-tiger-000000.json").write_text(json.dumps(record))
    assert plan_sweep(spec, results).done == {}


def _demo_digest(tmp_path: Path) -> str:
    """The data digest a sweep of demo computes (what its records hold as ``split.digest``)."""
    from bench.sweep import _data_digest
    from bench.runner import RunRequest, resolve_run_config

    request = RunRequest(method="pop", dataset="demo", data_dir=None, sets={}, seed=42, profile="cpu",
                         results_dir=tmp_path / "results")
    return _data_digest(request, resolve_run_config(request)[1], {})


def test_a_terminated_sweep_stops_its_runs_and_the_same_command_resumes_them(tmp_path):
    """SIGTERM to `bench sweep` (kill, a scheduler) reaches the run it is running: the run stops at
    its next safe point and says so in its log, nothing outlives the sweep, and the sweep exits 143."""
    import signal
    import time

    from bench.run_guard import work_folder_lock

    sweep_file = write(tmp_path, """
        methods = ["gru4rec"]
        datasets = ["demo"]
        seeds = [3]

        [set.gru4rec]
        epochs = 300
        stopping_step = 300
        threads = 1
        """)
    plan = plan_sweep(load_sweep(sweep_file), tmp_path / "results")
    work_dir = Path(plan.tasks[0].log_path).parent
    environment = {**os.environ, "GENREC_BENCH_CACHE": str(tmp_path / "cache")}
    sweep = subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", str(sweep_file), "--jobs", "1",
                              "--results-dir", str(tmp_path / "results")], cwd=PROJECT, env=environment,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_log = tmp_path / "cache" / "work" / work_dir.name / "run.log"
        deadline = time.monotonic() + 300
        while not (run_log.exists() and "epoch 1 training" in run_log.read_text()):
            assert sweep.poll() is None and time.monotonic() < deadline, "the run never reached its first epoch"
            time.sleep(0.5)
        sweep.send_signal(signal.SIGTERM)
        assert sweep.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if sweep.poll() is None:
            sweep.kill()
    with work_folder_lock(run_log.parent, wait=False, say=print):  # no run holds the folder any more
        pass
    log = (run_log.parent / "sweep.log").read_text()
    assert "the same command resumes" in log or "the same command starts the run again" in log
    assert records_in(tmp_path / "results") == []


def test_a_record_made_before_an_added_later_option_makes_its_run_done(tmp_path):
    """Pop's foundation options came after its first records, which hold none of them: such a
    record still makes the default pop run done (bench.config.declared_later)."""
    results = tmp_path / "results"
    spec = load_sweep(write(tmp_path, 'methods = ["pop"]\ndatasets = ["demo"]\nseeds = [5]\n'))
    assert run_sweep(plan_sweep(spec, results), LocalExecutor(jobs=1), echo=lambda line: None)[0].status == "finished"
    (path,) = records_in(results)
    record = json.loads(path.read_text())
    assert set(record["config"]["method"]) == {"foundation_datasets", "foundation_data_dirs", "foundation_users"}
    record["config"]["method"] = {}  # as pop's records made before those options were written
    path.write_text(json.dumps(record))
    plan = plan_sweep(spec, results)
    assert [task.identity for task in plan.tasks] != [record_identity(record)]
    assert plan.todo == []
