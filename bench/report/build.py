"""``bench report``: one static folder built from the results store alone.

The folder holds ``index.html``, its PNG plots under ``plots/`` and a copy of every record
under ``records/``, all linked by relative paths, so it opens offline and can be copied
anywhere. Every file is written atomically, the page last: a reader never finds a page that
points at an image not yet written.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.report.sections import CurveSection, TableSection, record_link, slug
from bench.storage import atomic_write_bytes, atomic_write_text

PLOTS = "plots"
# The paper's order; tables registered later (SETRec's, plugins') follow by name.
TABLE_ORDER = ("standard", "ablation", "zero-shot")


def training_curve(record: dict[str, Any]) -> tuple[list | None, int | None]:
    """A record's training curve and best epoch: in its method metadata, or at the top level."""
    metadata = record.get("method_metadata") or {}
    for holder in (metadata, record):
        if holder.get("training_curve"):
            return holder["training_curve"], holder.get("best_epoch")
    return None, None


class ReportWriter:
    """Collects the files of one report; ``finish`` writes the page after everything else."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.written: set[Path] = set()

    def write(self, relative: str, payload: bytes) -> str:
        path = self.out_dir / relative
        # each file whole or not at all, but not flushed one by one (thousands of run pages): the
        # report is rebuilt from the store at will
        atomic_write_bytes(path, payload, durable=False)
        self.written.add(path)
        return relative

    def remove_stale_plots(self) -> None:
        """Plots of an earlier report into the same folder that this one no longer draws."""
        for path in (self.out_dir / PLOTS).glob("*.png"):
            if path not in self.written:
                path.unlink()


def _table_sections(records: list[dict[str, Any]], writer: ReportWriter, progress) -> list[TableSection]:
    from bench.report.plots import bar_chart
    from bench.statistics import bootstrap_interval
    from bench.tables import cell_per_user, table_registry, table_rows

    registry = table_registry()
    sections = []
    names = [n for n in TABLE_ORDER if n in registry] + sorted(n for n in registry.names() if n not in TABLE_ORDER)
    for name in names:
        for spec in registry.get(name):
            rows = table_rows(spec, records)
            charts: dict[str, list[tuple[str, str]]] = {}
            for dataset, metric, cells, _ in rows:
                shown = [(column.label, cell) for column, cell in zip(spec.columns, cells) if cell.value is not None]
                if not shown:
                    continue
                intervals = []
                for _, cell in shown:
                    values = cell_per_user(cell, metric)
                    intervals.append(bootstrap_interval(values) if values is not None and len(values) else None)
                progress.set_postfix_str(f"{spec.paper_table}, {dataset}, {metric}", refresh=False)
                image = writer.write(
                    f"{PLOTS}/{slug(spec.paper_table)}-{slug(dataset)}-{slug(metric)}.png",
                    bar_chart(dataset, metric, [label for label, _ in shown],
                              [cell.value for _, cell in shown], intervals, [cell.paper for _, cell in shown]))
                charts.setdefault(dataset, []).append((metric, image))
                progress.update()
            headers = ["Dataset", "Metric"] + [column.label for column in spec.columns] + ["Improv."]
            sections.append(TableSection(name, spec.title, headers, rows, charts))
    return sections


def _curve_sections(records: list[dict[str, Any]], writer: ReportWriter, progress) -> list[CurveSection]:
    from bench.report.plots import curve_chart, has_curve

    sections = []
    for record in records:
        curve, best_epoch = training_curve(record)
        if not has_curve(curve):
            continue
        progress.set_postfix_str(f"training curve of {record['run_id']}", refresh=False)
        title = f"{record['method']} on {record['dataset']}, seed {record.get('seed')} ({record['run_id']})"
        image = writer.write(f"{PLOTS}/curve-{slug(record['run_id'])}.png", curve_chart(title, curve, best_epoch))
        sections.append(CurveSection(record, image))
        progress.update()
    return sections


def build_report(results_dir: Path, out_dir: Path, show_progress: bool = False) -> Path:
    """Write the report of everything in ``results_dir`` into ``out_dir``; returns index.html.
    ``show_progress``: a progress bar of the plots drawn (on stderr)."""
    from bench.claims import check_claims
    from bench.progress import progress_bar
    from bench.report.page import render_page
    from bench.results import all_records

    if not Path(results_dir).is_dir():
        raise BenchError(f"{results_dir}: results store not found")
    if Path(out_dir).resolve() == Path(results_dir).resolve():
        raise BenchError(f"{out_dir}: the report folder must not be the results store")
    records = sorted(all_records(results_dir), key=lambda r: (r["dataset"], r["method"], r["started_at"]))
    writer = ReportWriter(out_dir)
    for record in records:
        writer.write(record_link(record), Path(record["_path"]).read_bytes())
    with progress_bar(disable=not show_progress, desc="report plots", unit="plot") as progress:
        tables = _table_sections(records, writer, progress)
        curves = _curve_sections(records, writer, progress)
    writer.remove_stale_plots()
    page = render_page(results_dir=Path(results_dir), records=records, tables=tables, curves=curves,
                       generated=dt.datetime.now(dt.timezone.utc), claims=check_claims(records))
    index = Path(out_dir) / "index.html"
    atomic_write_text(index, page)
    return index
