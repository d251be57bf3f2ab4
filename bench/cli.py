"""The ``bench`` command. Thin: parses, calls the core, prints. Never imports a method by name."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.errors import BenchError
from bench.run_guard import RunStopped

RESULTS_OPTION = click.option("--results-dir", type=click.Path(path_type=Path), default=Path("results"),
                              show_default=True, help="the results store")


@click.group()
def cli() -> None:
    """genrec-bench: generative and sequential recommenders under one evaluator."""


@cli.command()
@click.option("--method", required=True, help="a registered method (see `bench list methods`)")
@click.option("--dataset", required=True, help="a registered dataset (see `bench list datasets`)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="folder with the dataset's raw files or its IDGenRec/OpenP5 folder")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="TOML or JSON file of config keys")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override one config key (repeatable); eval.* keys set the protocol")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--profile", type=click.Choice(["cpu", "paper"]), default="cpu", show_default=True,
              help="cpu: small models built here, no hub; paper: the papers' checkpoints and sizes")
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="data-parallel processes, started through torch's launcher (one per GPU; gloo on CPU); "
                   "under torchrun or accelerate launch the launcher's count is used")
@click.option("--no-wait", is_flag=True, help="when another run of this configuration holds its work folder, "
              "stop at once naming it, instead of waiting for it to finish")
@RESULTS_OPTION
def run(method: str, dataset: str, data_dir: Path | None, config_file: Path | None, sets: tuple[str, ...],
        seed: int, profile: str, quiet: bool, processes: int, no_wait: bool, results_dir: Path) -> None:
    """Train and evaluate one method on one dataset; the last line printed is the record's path."""
    from bench.config import parse_sets
    from bench.launch import check_method_processes, check_process_count, launch, needs_launch
    from bench.results import read_record
    from bench.runner import RunRequest, execute, resolve_run_config
    from bench.tables import metrics_line

    check_process_count(processes)
    request = RunRequest(method=method, dataset=dataset, data_dir=data_dir, config_file=config_file,
                         sets=parse_sets(sets), seed=seed, profile=profile, results_dir=results_dir,
                         show_progress=not quiet, wait=not no_wait)
    if needs_launch(processes):
        # A bad key or a one-process method is reported once, before any process starts.
        method_class, _ = resolve_run_config(request)
        check_method_processes(method_class, method, processes)
        launch(processes, sys.argv[1:])
        return
    path = execute(request, log=lambda message: click.echo(message, err=True))
    if path is None:  # not the main process of a multi-process run: it wrote nothing
        return
    record = read_record(path)
    click.echo(metrics_line(record))
    click.echo(str(path))


@cli.command()
@click.argument("sweep_file", type=click.Path(path_type=Path))
@click.option("--executor", type=click.Choice(["local", "slurm", "submitit-local"]), default="local",
              show_default=True, help="local: worker processes here; slurm: one job per run through submitit; "
                                      "submitit-local: the slurm path run on this machine (to try a sweep file)")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="local executor: runs at once (the cores are split between them)")
@click.option("--dry-run", is_flag=True, help="list the runs: done, or todo with what its work folder holds (the "
              "last epoch its log reports); start nothing")
@click.option("--only", multiple=True, metavar="FIELD=VALUE",
              help="only the runs whose method, dataset, seed or group is VALUE (comma-separated values; "
                   "repeat for several fields, all must hold)")
@click.option("--partition", default=None, help="slurm: partition (overrides the file's [slurm] table)")
@click.option("--time-minutes", type=int, default=None, help="slurm: wall-time limit per job")
@click.option("--gpus-per-job", type=int, default=None, help="slurm: GPUs per job")
@click.option("--cpus-per-job", type=int, default=None,
              help="CPU cores per job: slurm: asked of the scheduler; local: each run's thread budget (default: "
                   "this machine's cores split over --jobs)")
@click.option("--mem-gb", type=float, default=None, help="slurm: memory per job, GiB")
@RESULTS_OPTION
def sweep(sweep_file: Path, executor: str, jobs: int, dry_run: bool, only: tuple[str, ...], partition: str | None,
          time_minutes: int | None, gpus_per_job: int | None, cpus_per_job: int | None, mem_gb: float | None,
          results_dir: Path) -> None:
    """Run a grid of methods x datasets x seeds x overrides from SWEEP_FILE (TOML), skipping runs
    whose record is in the store; see docs/sweeps.md."""
    from bench.sweep import load_sweep, plan_sweep, select_points, summary_lines, work_folder_state

    flags = {"partition": partition, "time_minutes": time_minutes, "gpus_per_job": gpus_per_job,
             "cpus_per_job": cpus_per_job, "mem_gb": mem_gb}
    plan = plan_sweep(select_points(load_sweep(sweep_file, flags), only), results_dir)
    if dry_run:
        for task in plan.tasks:
            click.echo(f"done\t{task.label}" if task.identity in plan.done
                       else f"todo\t{task.label}\t{work_folder_state(task)}")
        return
    from bench.sweep_executors import LocalExecutor, SubmititExecutor, run_sweep

    if executor == "local":
        runner = LocalExecutor(jobs, cores_per_run=cpus_per_job)
    else:
        from bench.data.prepare import cache_root
        runner = SubmititExecutor(plan.spec.slurm, cache_root() / "sweeps" / plan.spec.name,
                                  cluster="slurm" if executor == "slurm" else "local",
                                  poll_seconds=15.0 if executor == "slurm" else 1.0,
                                  job_name=f"bench-{plan.spec.name}")
    outcomes = run_sweep(plan, runner, echo=lambda line: click.echo(line, err=True))
    for line in summary_lines(plan, outcomes):
        click.echo(line)
    failed = sum(outcome.status == "failed" for outcome in outcomes)
    if failed:
        raise BenchError(f"{failed} of {len(plan.tasks)} runs of sweep {plan.spec.name} failed (listed above)")


@cli.command()
def doctor() -> None:
    """What to check before a long run: devices and precisions, packages, checkpoints, disk."""
    from bench.doctor import report

    for line in report():
        click.echo(line)


@cli.command(name="list")
@click.argument("what", type=click.Choice(["methods", "datasets"]))
def list_(what: str) -> None:
    """List registered methods or datasets."""
    if what == "methods":
        from bench.registry import methods
        for name in methods().names():
            click.echo(name)
    else:
        from bench.data.cards import dataset_cards
        cards = dataset_cards()
        for name in cards.names():
            click.echo(f"{name}\t{cards.get(name)['title']}")


@cli.group()
def data() -> None:
    """Download and prepare datasets."""


@data.command()
@click.argument("name")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="folder with the dataset's files; a NAME no card declares is read as a user dataset")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="data.rating_threshold / data.k_core / data.item_attributes_from for RecBole atomic files (repeatable)")
def prepare(name: str, data_dir: Path | None, sets: tuple[str, ...]) -> None:
    """Prepare (and cache) a dataset; prints its size."""
    from bench.config import parse_sets, resolve_data_config
    from bench.data.prepare import dataset_messages, prepare_dataset
    from bench.errors import BenchError

    values = parse_sets(sets)
    unknown = [key for key in values if not key.startswith("data.")]
    if unknown:
        raise BenchError(f"bench data prepare takes only data.* keys, got '{unknown[0]}'")
    dataset = prepare_dataset(name, data_dir, resolve_data_config({k[len("data."):]: v for k, v in values.items()}))
    for line in dataset_messages(dataset):
        click.echo(line, err=True)
    summary = dataset.summary()
    sizes = f"{name}: {summary['users']} users, {summary['items']} items, {summary['interactions']} interactions"
    if "dropped_users_fewer_than_3" in dataset.metadata:  # a published split keeps its users as given
        sizes += f"; dropped {dataset.metadata['dropped_users_fewer_than_3']} users with fewer than 3 interactions"
    click.echo(sizes)


@cli.command("upgrade-record")
@click.argument("record", type=click.Path(path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="the dataset folder the record was evaluated on (default: its dataset card's)")
def upgrade_record(record: Path, data_dir: Path | None) -> None:
    """Rewrite a record made before ranks were stored: ranks from its per-user values, plus the
    repeat/novel blocks its dataset implies (docs/evaluation.md); no retraining."""
    from bench.record_upgrade import upgrade_record_file

    upgraded = upgrade_record_file(record, data_dir)
    click.echo(f"{record}: upgraded ({record.stat().st_size} bytes)")
    for side in ("repeat", "novel"):
        if f"metrics_{side}" in upgraded:
            values = ", ".join(f"{name} {value:.4f}" for name, value in upgraded[f"metrics_{side}"].items())
            click.echo(f"{side} targets ({upgraded['repeat_novel'][side + '_targets']}): {values}")


@cli.command()
@click.argument("run_a")
@click.argument("run_b", nargs=-1, required=True)
@click.option("--format", "output_format", type=click.Choice(["markdown", "latex", "csv"]), default="markdown")
@click.option("--seed-group", is_flag=True,
              help="each run stands for every seed of its configuration in the store (mean over seeds; "
                   "paired test on seed-averaged per-user values)")
@click.option("--targets", type=click.Choice(["all", "warm", "cold", "warm-in-group", "cold-in-group", "repeat",
                                             "novel"]),
              default="all", show_default=True,
              help="test one group of the test targets, over the users who have one: warm or cold among all "
                   "items, or within their group (SETRec's protocol); repeat (in the user's history) or "
                   "novel; docs/evaluation.md")
@RESULTS_OPTION
def compare(run_a: str, run_b: tuple[str, ...], output_format: str, seed_group: bool, targets: str,
            results_dir: Path) -> None:
    """Paired tests of RUN_A against one or more baseline runs (paths or run ids). A side may be
    a group of seeds of one configuration: run ids joined by '+' (ID1+ID2+ID3), or --seed-group."""
    from bench.evaluation.metrics import metric_names
    from bench.results import TARGET_GROUPS, all_records, find_record
    from bench.statistics import compare_groups, seed_group_key, seed_groups

    def group_of(reference: str) -> list[dict]:
        group = [find_record(results_dir, part) for part in reference.split("+")]
        if seed_group:
            keys = {seed_group_key(record) for record in group}
            matching = [record for record in all_records(results_dir) if seed_group_key(record) in keys]
            group = [record for same in seed_groups(matching) for record in same]
        return group

    candidate = group_of(run_a)
    baselines = [group_of(reference) for reference in run_b]
    cutoffs = tuple(candidate[0]["config"]["eval"]["cutoffs"])
    several_targets = candidate[0]["split"].get("protocol", "leave-one-out") != "leave-one-out"
    report = compare_groups(candidate, baselines, metric_names(cutoffs, multi_target=several_targets),
                            TARGET_GROUPS[targets])
    if output_format == "csv":
        click.echo(report.to_frame().to_csv(index=False), nl=False)
    else:
        click.echo(report.to_latex() if output_format == "latex" else report.to_markdown())


@cli.command()
@click.argument("name")
@click.option("--format", "output_format", type=click.Choice(["markdown", "latex", "csv"]), default="markdown")
@click.option("--with-paper", is_flag=True, help="show the paper's number beside each cell")
@click.option("--explain", is_flag=True, help="for each cell: its records, config digest, the rule that chose them, "
                                              "and the other configurations with their validation scores")
@click.option("--targets", type=click.Choice(["all", "repeat", "novel"]), default="all", show_default=True,
              help="every row over one block of the test targets: repeat (the item is in the user's history) "
                   "or novel; docs/evaluation.md")
@click.option("--cost", is_flag=True, help="the core-hours behind each row: the chosen records' training and "
                                           "test rankings, and all records that fitted a cell")
@RESULTS_OPTION
def table(name: str, output_format: str, with_paper: bool, explain: bool, cost: bool, targets: str,
          results_dir: Path) -> None:
    """Render a paper table (standard, ablation, zero-shot, setrec) from the results store."""
    if cost:
        from bench.table_cost import cost_table

        click.echo(cost_table(name, results_dir))
        return
    if explain:
        from bench.table_explain import explain_table

        click.echo(explain_table(name, results_dir))
        return
    from bench.tables import render_table

    click.echo(render_table(name, results_dir, output_format, with_paper, targets))


@cli.command()
@click.option("--claim", "only", default=None, help="check only the claim with this id")
@RESULTS_OPTION
def claims(only: str | None, results_dir: Path) -> None:
    """Check the papers' claims (bench/reference/tables.toml) on the cells of their tables: per
    dataset, paired t-tests of the winning column against each baseline, Holm-adjusted."""
    from bench.claims import render_claims

    click.echo(render_claims(results_dir, only))


@cli.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="folder to write index.html, plots/ and records/ into (created if missing)")
@click.option("--quiet", is_flag=True, help="no progress bar of the plots being drawn")
@RESULTS_OPTION
def report(out_dir: Path, quiet: bool, results_dir: Path) -> None:
    """Static HTML report of the store: paper tables with bar charts (bootstrap 95% intervals),
    the papers' claims checked on them, training curves, and every run with its config, hardware,
    versions and timings."""
    from bench.report import build_report

    index = build_report(results_dir, out_dir, show_progress=not quiet)
    click.echo(str(index))


@cli.group()
def ids() -> None:
    """Textual item IDs of a run."""


@ids.command()
@click.option("--dataset", required=True, help="the dataset of the run")
@click.option("--run", "run_id", default=None, help="run id or record path (default: the newest run with IDs)")
@click.option("--method", default="idgenrec", show_default=True, help="method whose newest run is shown")
@click.option("--sample", type=int, default=10, show_default=True, help="items to print")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the item sample")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="where to write all IDs (default: <run_id>.ids.tsv beside the record)")
@RESULTS_OPTION
def show(dataset: str, run_id: str | None, method: str, sample: int, seed: int, output: Path | None,
         results_dir: Path) -> None:
    """Print item text, initial ID and final ID for sampled items; export all IDs."""
    from tabulate import tabulate

    from bench.ids import export_path, find_run, read_ids, sample_rows, write_ids

    record = find_run(results_dir, dataset, run_id, method)
    rows = read_ids(results_dir, record)
    shown = sample_rows(rows, sample, seed)
    click.echo(f"run {record['run_id']} ({record['method']} on {record['dataset']}), {len(rows)} items")
    click.echo(tabulate([(row["item"], row["text"][:70], row["initial_id"], row["final_id"]) for row in shown],
                        headers=["item", "text", "initial ID", "final ID"], tablefmt="github"))
    destination = output or export_path(results_dir, record)
    write_ids(destination, rows)
    click.echo(f"all IDs: {destination}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code or 2)
    except BenchError as error:
        from bench.devices import launched_processes, launched_rank

        # In a multi-process run each process says which it is, except the main one.
        where = f" (process {launched_rank()} of {launched_processes()})" if launched_rank() else ""
        click.echo(f"error{where}: {error}", err=True)
        sys.exit(2)
    except RunStopped as stop:  # SIGTERM or SIGINT during a run (bench.run_guard)
        from bench.devices import launched_rank

        if not launched_rank():  # the main process says it for all
            click.echo(stop.message(), err=True)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted; no record was written", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
