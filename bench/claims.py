"""The papers' claims checked on the store: ``bench claims``.

A claim is data (``[[claim]]`` in ``bench/reference/tables.toml``): a table, the column the
paper says wins, the columns it wins against, and the paper's words. It is checked on the cells
that table shows (the same records, chosen on validation: :mod:`bench.tables`), one dataset row
at a time:

- per baseline and metric, the candidate's relative gain and a paired t-test over users on the
  seed-averaged per-user values; the p-values of one dataset are Holm-adjusted together;
- the claim **holds** on a dataset when the candidate is above every baseline on every metric
  (adjusted p < 0.05), **does not hold** when some baseline is above it on some metric, and is
  **not shown** otherwise (a difference the tests cannot tell from noise, or a baseline without
  a record: the claim is against all of them);
- the mean over the metrics of the candidate's gain over the strongest baseline of each metric,
  beside the same number from the paper's cells.

A dataset whose row lacks the candidate or a baseline says which; a missing baseline can leave
the claim not shown, never holding, but one baseline above the candidate is enough to break it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.errors import BenchError
from bench.results import store_records
from bench.statistics import ALPHA, holm, paired_tests
from bench.table_specs import SPEC_FILE, TableSpec, read_table_file, table_registry
from bench.tables import WALL_CLOCK_MARK, Cell, cell_per_user, table_rows

HOLDS, DOES_NOT_HOLD, NOT_SHOWN = "holds", "does not hold", "not shown"


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    table: str  # a table spec's id
    candidate: str  # the column the paper says wins
    baselines: tuple[str, ...]  # the columns it wins against
    paper: str  # the claim in the paper's words (or close to them), with its source
    datasets: tuple[str, ...] = ()  # the datasets the claim is checked on (default: the table's)


def declared_claims() -> list[Claim]:
    """The ``[[claim]]`` entries of the table file, checked against its tables' columns."""
    return parse_claims(read_table_file("claim", required=False), f"bench/{SPEC_FILE}")


def parse_claims(entries: Sequence[Mapping[str, Any]], where: str) -> list[Claim]:
    """``[[claim]]`` entries of a table file as claims; ``where`` names the file in errors."""
    claims = []
    for entry in entries:
        try:
            claim = Claim(id=entry["id"], table=entry["table"], candidate=entry["candidate"],
                          baselines=tuple(entry["baselines"]), paper=entry["paper"],
                          datasets=tuple(entry.get("datasets", ())))
        except (KeyError, TypeError) as error:
            raise BenchError(f"{where}: claim '{entry.get('id')}' lacks key {error}") from None
        labels = {column.label for column in spec_by_id(claim.table).columns}
        unknown = [label for label in (claim.candidate, *claim.baselines) if label not in labels]
        if unknown:
            raise BenchError(f"{where}: claim '{claim.id}' names column '{unknown[0]}', which table "
                             f"'{claim.table}' does not have")
        claims.append(claim)
    return claims


def spec_by_id(table_id: str) -> TableSpec:
    registry = table_registry()
    for name in registry.names():
        for spec in registry.get(name):
            if spec.paper_table == table_id:
                return spec
    raise BenchError(f"bench/{SPEC_FILE}: no table has id '{table_id}'")


def _gain(candidate: float | None, baseline: float | None) -> float | None:
    if candidate is None or baseline is None or baseline <= 0:
        return None
    return (candidate - baseline) / baseline


def _mean_gain_over_strongest(candidate: Sequence[float | None], baselines: Sequence[Sequence[float | None]]) -> \
        float | None:
    """Mean over the metrics of the candidate's gain over each metric's strongest baseline."""
    gains = []
    for metric_index, value in enumerate(candidate):
        present = [row[metric_index] for row in baselines if row[metric_index] is not None]
        gain = _gain(value, max(present)) if present else None
        if gain is None:
            return None
        gains.append(gain)
    return sum(gains) / len(gains) if gains else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def check_dataset(claim: Claim, dataset: str, rows: Sequence[tuple[str, list[Cell]]], labels: Sequence[str]) -> str:
    """One dataset's sentence: the verdict, the gain over the strongest baseline (ours, the
    paper's), and per baseline its mean gain and how many metrics are above / level / below."""
    column = {label: index for index, label in enumerate(labels)}
    metrics = [metric for metric, _ in rows]
    candidate = [cells[column[claim.candidate]] for _, cells in rows]
    if all(cell.value is None for cell in candidate):
        return f"{dataset}: no {claim.candidate} record"
    present = [b for b in claim.baselines if any(cells[column[b]].value is not None for _, cells in rows)]
    missing = [b for b in claim.baselines if b not in present]
    if not present:
        return f"{dataset}: no record of {', '.join(claim.baselines)}"
    tests: list[tuple[str, int, float]] = []  # (baseline, metric index, raw p)
    for baseline in present:
        for index, (metric, cells) in enumerate(rows):
            ours, theirs = candidate[index], cells[column[baseline]]
            if ours.value is None or theirs.value is None \
                    or ours.record["split"]["digest"] != theirs.record["split"]["digest"]:
                continue
            a, b = cell_per_user(ours, metric), cell_per_user(theirs, metric)
            if a is not None and b is not None:
                tests.append((baseline, index, paired_tests(a, b)[0]))
    adjusted = holm([p for _, _, p in tests]) if tests else []
    counts = {baseline: [0, 0, 0] for baseline in present}  # above, level, below
    for (baseline, index, _), p in zip(tests, adjusted):
        ours, theirs = candidate[index].value, rows[index][1][column[baseline]].value
        counts[baseline][1 if p >= ALPHA else (0 if ours > theirs else 2)] += 1
    tested_everywhere = all(sum(counts[b]) == len(metrics) for b in present)
    if any(counts[b][2] for b in present):
        verdict = DOES_NOT_HOLD
    elif not missing and tested_everywhere and all(counts[b][0] == len(metrics) for b in present):
        verdict = HOLDS
    else:
        verdict = NOT_SHOWN
    ours_gain = _mean_gain_over_strongest([c.value for c in candidate],
                                          [[cells[column[b]].value for _, cells in rows] for b in present])
    paper_gain = _mean_gain_over_strongest([c.paper for c in candidate],
                                           [[cells[column[b]].paper for _, cells in rows] for b in claim.baselines])
    per_baseline = []
    for baseline in present:
        gains = [_gain(candidate[i].value, cells[column[baseline]].value) for i, (_, cells) in enumerate(rows)]
        known = [g for g in gains if g is not None]
        mean = _percent(sum(known) / len(known)) if known else "-"
        budget = WALL_CLOCK_MARK if any(cells[column[baseline]].wall_clock for _, cells in rows) else ""
        per_baseline.append(f"{baseline}{budget} {mean} ({'/'.join(map(str, counts[baseline]))})")
    sentence = (f"{dataset}: {verdict}. {claim.candidate} against the strongest of {len(present)} baselines per "
                f"metric, mean over {', '.join(metrics)}: {_percent(ours_gain)} (paper {_percent(paper_gain)}). "
                f"Per baseline, mean gain (metrics above/level/below): {'; '.join(per_baseline) or 'none'}.")
    if missing:
        sentence += f" No record: {', '.join(missing)}."
    return sentence


def check_claims(records: Sequence[dict[str, Any]], only: str | None = None) -> list[tuple[Claim, str, list[str]]]:
    """Every declared claim (or the one named ``only``) checked on ``records``: the claim, its
    table's title, and one sentence per dataset row of its table."""
    declared = declared_claims()
    claims = [claim for claim in declared if only is None or claim.id == only]
    if only is not None and not claims:
        raise BenchError(f"no claim '{only}'; known: {', '.join(c.id for c in declared)}")
    checked = []
    for claim in claims:
        spec = spec_by_id(claim.table)
        labels = [column.label for column in spec.columns]
        by_dataset: dict[str, list[tuple[str, list[Cell]]]] = {}
        for dataset, metric, cells, _ in table_rows(spec, list(records)):
            by_dataset.setdefault(dataset, []).append((metric, cells))
        wanted = claim.datasets or spec.datasets
        checked.append((claim, spec.title, [check_dataset(claim, dataset, rows, labels)
                                            for dataset, rows in by_dataset.items()
                                            if dataset.split(" ")[0].lower() in wanted]))
    return checked


CLAIMS_NOTE = (f"Paired t-tests over users on the cells `bench table` shows, Holm-adjusted within each dataset, "
               f"p < {ALPHA}; gains are relative to the baseline's value; {WALL_CLOCK_MARK}: a wall-clock budget "
               f"stopped that baseline's training (docs/evaluation.md).")
NO_ROW = "no dataset of the table has a record"


def render_claims(results_dir: Path, only: str | None = None) -> str:
    """``bench claims``: :func:`check_claims` on the store, as markdown."""
    parts = [f"## {claim.id} ({title})\n\nThe paper: {claim.paper}\n\n"
             + ("\n".join(f"- {s}" for s in sentences) or f"- {NO_ROW}")
             for claim, title, sentences in check_claims(store_records(results_dir), only)]
    return "\n\n".join(parts) + "\n\n" + CLAIMS_NOTE
