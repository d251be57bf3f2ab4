"""The report's one HTML page: inline style, relative links, no script, nothing fetched."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path
from typing import Any, Sequence

from bench.report.sections import CurveSection, TableSection, record_link, slug
from bench.run_cost import run_cost
from bench.tables import WALL_CLOCK_MARK, digits_for

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.label { text-align: left; white-space: nowrap; }
td a { color: inherit; text-decoration: none; } td a:hover { text-decoration: underline; }
.paper { color: #888; font-size: 0.85em; } .note { color: #555; font-size: 0.9em; }
.wide { overflow-x: auto; } .charts { display: flex; flex-wrap: wrap; gap: 0.6em; }
.charts img { width: calc(25% - 0.6em); min-width: 280px; height: auto; border: 1px solid #eee; }
details pre { text-align: left; font-size: 0.85em; white-space: pre-wrap; max-width: 40em; }
nav a { margin-right: 1em; } td.versions { text-align: left; font-size: 0.85em; max-width: 22em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _anchor(record: dict[str, Any]) -> str:
    return f"run-{_e(record['run_id'])}"


def _cell_html(cell, digits: int) -> str:
    if cell.value is None:
        text = "-"
    else:
        text = f"{cell.value:.{digits}f}" + (f" ± {cell.std:.{digits}f}" if cell.std is not None else "")
        text += "*" if cell.significant else ""
        if cell.mark == "best":
            text = f"<strong>{text}</strong>"
        elif cell.mark == "second":
            text = f"<u>{text}</u>"
        text += WALL_CLOCK_MARK if cell.wall_clock else ""
        # The cell links to its record (each seed's, when several); the tooltip says why these records.
        runs = ", ".join(r["run_id"] for r in cell.records)
        why = f"{runs}; {cell.choice.rule}: {cell.choice.reason}" if cell.choice else runs
        text = f'<a href="{_e(record_link(cell.records[0]))}" title="{_e(why)}">{text}</a>'
        text += "".join(f'<sup><a href="{_e(record_link(record))}" title="{_e(record["run_id"])}">{number}</a></sup>'
                        for number, record in enumerate(cell.records[1:], start=2))
    if cell.paper is not None:
        text += f' <span class="paper">({cell.paper:.{digits}f})</span>'
    return text


def _table_html(section: TableSection) -> str:
    if not section.rows:
        return f"<h3>{_e(section.title)}</h3>\n<p class=note>No runs in the store for this table yet.</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in section.headers)
    body = []
    for dataset, metric, cells, improvement in section.rows:
        cells_html = "".join(f"<td>{_cell_html(cell, digits_for(metric))}</td>" for cell in cells)
        body.append(f'<tr><td class=label>{_e(dataset)}</td><td class=label>{_e(metric)}</td>{cells_html}'
                    f"<td>{_e(improvement)}</td></tr>")
    charts = []
    for dataset, images in section.charts.items():
        figures = "".join(f'<img src="{_e(image)}" alt="{_e(section.title)}, {_e(dataset)}, {_e(metric)}">'
                          for metric, image in images)
        charts.append(f"<h4>{_e(dataset)}</h4>\n<div class=charts>{figures}</div>")
    note = ""
    if any(cell.wall_clock for _, _, cells, _ in section.rows for cell in cells):
        note = (f"<p class=note>{WALL_CLOCK_MARK}: training stopped by a wall-clock budget (max_train_minutes): its "
                "epoch count depends on the machine and its load.</p>\n")
    return (f'<h3 id="table-{_e(slug(section.title))}">{_e(section.title)}</h3>\n'
            f"<div class=wide><table><tr>{head}</tr>\n" + "\n".join(body) + "</table></div>\n" + note
            + "\n".join(charts))


def _summary(mapping: dict[str, Any] | None) -> str:
    if not mapping:
        return "-"
    return "<br>".join(f"{_e(key)}: {_e(value)}" for key, value in mapping.items() if not isinstance(value, dict))


def _run_row(record: dict[str, Any]) -> str:
    timings = dict(record.get("wall_time_seconds") or {})
    inference = record.get("inference") or {}
    if "seconds" in inference:
        timings["inference"] = inference["seconds"]
    timings["core-hours"] = f"{run_cost(record).total / 3600:.2f}"  # across resumes (bench/run_cost.py)
    config = json.dumps(record.get("config", {}), indent=1, sort_keys=True)
    versions = ", ".join(f"{name} {value}" for name, value in (record.get("versions") or {}).items())
    source = (record.get("dataset_source") or {}).get("source")
    data = f"{Path(source).name if source else record['dataset']} ({record['split'].get('protocol', 'leave-one-out')})"
    return (f'<tr id="{_anchor(record)}"><td class=label><a href="{_e(record_link(record))}">{_e(record["run_id"])}'
            f"</a></td><td class=label>{_e(record['method'])}</td><td class=label>{_e(record['dataset'])}</td>"
            f"<td class=label>{_e(data)}</td>"
            f"<td>{_e(record.get('seed', '-'))}</td><td class=label>{_e(record.get('profile', '-'))}</td>"
            f"<td class=label>{_e(record.get('started_at', '-'))}</td><td class=label>{_summary(timings)}</td>"
            f"<td class=label>{_summary(record.get('hardware'))}</td><td class=versions>{_e(versions)}</td>"
            f"<td class=label><details><summary>config</summary><pre>{_e(config)}</pre></details></td></tr>")


def _claims_html(claims: Sequence[tuple[Any, str, list[str]]]) -> list[str]:
    """The papers' claims as ``bench claims`` checks them (:mod:`bench.claims`)."""
    from bench.claims import CLAIMS_NOTE, NO_ROW

    note = re.sub(r"`([^`]*)`", r"<code>\1</code>", _e(CLAIMS_NOTE))
    parts = ['<h2 id="claims">Claims</h2>', f"<p class=note>{note}</p>"]
    for claim, title, sentences in claims:
        items = "".join(f"<li>{_e(sentence)}</li>" for sentence in sentences) or f"<li>{_e(NO_ROW)}</li>"
        parts.append(f"<h3>{_e(claim.id)} ({_e(title)})</h3><p>The paper: {_e(claim.paper)}</p><ul>{items}</ul>")
    return parts


def render_page(results_dir: Path, records: Sequence[dict[str, Any]], tables: Sequence[TableSection],
                curves: Sequence[CurveSection], generated: dt.datetime,
                claims: Sequence[tuple[Any, str, list[str]]] = ()) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>genrec-bench report</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>genrec-bench report</h1>",
             f"<p class=note>{len(records)} run records from <code>{_e(results_dir)}</code>, "
             f"built {generated:%Y-%m-%d %H:%M} UTC by <code>bench report</code>.</p>",
             '<nav><a href="#tables">Tables</a><a href="#claims">Claims</a><a href="#curves">Training curves</a>'
             '<a href="#runs">Runs</a></nav>',
             '<h2 id="tables">Tables</h2>',
             "<p class=note>As <code>bench table</code>: bold best, underlined second, * paired t-test over users "
             "against the second best with p &lt; 0.05; Improv. is the best value's gain over the second best, "
             "whichever columns hold them; a ± b is the mean ± standard deviation over seeds; the "
             "paper's number in grey. Charts: bars are the cell values; whiskers the bootstrap 95% interval over "
             "users (percentile, 1,000 resamples) of the seed-averaged per-user values; a cross marks the "
             "paper's number. A cell links to its run below.</p>"]
    parts += [_table_html(section) for section in tables]
    parts += _claims_html(claims)
    parts.append('<h2 id="curves">Training curves</h2>')
    if not curves:
        parts.append("<p class=note>No record in the store has a training curve.</p>")
    for section in curves:
        record = section.record
        parts.append(f'<h4><a href="#{_anchor(record)}">{_e(record["method"])} on {_e(record["dataset"])}, '
                     f'seed {_e(record.get("seed", "-"))}</a></h4><img src="{_e(section.image)}" '
                     f'alt="training curve of {_e(record["run_id"])}">')
    parts.append('<h2 id="runs">Runs</h2>')
    parts.append("<table><tr><th>run (record)</th><th>method</th><th>dataset</th><th>data (split)</th><th>seed</th><th>profile</th>"
                 "<th>started</th><th>seconds</th><th>hardware</th><th>versions</th><th>config</th></tr>")
    parts += [_run_row(record) for record in records]
    parts.append("</table></body></html>\n")
    return "\n".join(parts)
