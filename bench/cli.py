"""The ``bench`` command. Thin: parses, calls the core, prints. Never imports a method by name."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.errors import BenchError

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
@RESULTS_OPTION
def run(method: str, dataset: str, data_dir: Path | None, config_file: Path | None, sets: tuple[str, ...],
        seed: int, profile: str, quiet: bool, processes: int, results_dir: Path) -> None:
    """Train and evaluate one method on one dataset; the last line printed is the record's path."""
    from bench.config import parse_sets
    from bench.launch import check_process_count, launch, needs_launch
    from bench.results import read_record
    from bench.runner import RunRequest, execute, resolve_run_config
    from bench.tables import metrics_line

    check_process_count(processes)
    request = RunRequest(method=method, dataset=dataset, data_dir=data_dir, config_file=config_file,
                         sets=parse_sets(sets), seed=seed, profile=profile, results_dir=results_dir,
                         show_progress=not quiet)
    if needs_launch(processes):
        resolve_run_config(request)  # a bad key is reported once, before any process starts
        launch(processes, sys.argv[1:])
        return
    path = execute(request, log=lambda message: click.echo(message, err=True))
    if path is None:  # not the main process of a multi-process run: it wrote nothing
        return
    record = read_record(path)
    click.echo(metrics_line(record))
    click.echo(str(path))


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
              help="data.rating_threshold / data.k_core for RecBole atomic files (repeatable)")
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
    dropped = dataset.metadata.get("dropped_users_fewer_than_3", 0)
    click.echo(f"{name}: {summary['users']} users, {summary['items']} items, "
               f"{summary['interactions']} interactions; dropped {dropped} users with fewer than 3 interactions")


@cli.command()
@click.argument("run_a")
@click.argument("run_b", nargs=-1, required=True)
@click.option("--format", "output_format", type=click.Choice(["markdown", "latex", "csv"]), default="markdown")
@RESULTS_OPTION
def compare(run_a: str, run_b: tuple[str, ...], output_format: str, results_dir: Path) -> None:
    """Paired tests of RUN_A against one or more baseline runs (paths or run ids)."""
    from bench.results import find_record
    from bench.statistics import compare_runs
    from bench.evaluation.metrics import metric_names

    candidate = find_record(results_dir, run_a)
    baselines = [find_record(results_dir, reference) for reference in run_b]
    cutoffs = tuple(candidate["config"]["eval"]["cutoffs"])
    report = compare_runs(candidate, baselines, metric_names(cutoffs))
    if output_format == "csv":
        click.echo(report.to_frame().to_csv(index=False), nl=False)
    else:
        click.echo(report.to_latex() if output_format == "latex" else report.to_markdown())


@cli.command()
@click.argument("name")
@click.option("--format", "output_format", type=click.Choice(["markdown", "latex", "csv"]), default="markdown")
@click.option("--with-paper", is_flag=True, help="show the paper's number beside each cell")
@RESULTS_OPTION
def table(name: str, output_format: str, with_paper: bool, results_dir: Path) -> None:
    """Render a paper table (standard, ablation, zero-shot) from the results store."""
    from bench.tables import render_table

    click.echo(render_table(name, results_dir, output_format, with_paper))


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
        from bench.engine.accelerator import launched_processes, launched_rank

        # In a multi-process run each process says which it is, except the main one.
        where = f" (process {launched_rank()} of {launched_processes()})" if launched_rank() else ""
        click.echo(f"error{where}: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted; no record was written", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
