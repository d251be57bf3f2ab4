"""The tables as data: ``bench/reference/tables.toml`` declares each table (datasets, metrics,
columns), and each registered method may add the columns it declares (``table_columns``).

A column names a method and the configuration values a record must have to fill it (``where``),
so ablation variants of one method are separate columns; a list there accepts any of its values.
Nothing here names a method.
"""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from typing import Any, Mapping

from bench.config import check_option
from bench.errors import BenchError
from bench.identity import added_later_defaults
from bench.method import TableColumn
from bench.reality_check import FAMILIES
from bench.registry import Registry, methods

SPEC_FILE = "reference/tables.toml"


@dataclasses.dataclass(frozen=True)
class Column(TableColumn):
    """A column of a table: its declaration (from the table file or a method's
    ``table_columns``) and the method whose records fill it."""

    method: str = dataclasses.field(kw_only=True)

    def matches(self, record: dict[str, Any]) -> bool:
        if record["method"] != self.method:
            return False
        # A record made before an option existed (``added_later``) ran what its default does.
        method_config = {**added_later_defaults(self.method), **record["config"]["method"]}
        return all(_accepts(wanted, method_config.get(key)) for key, wanted in self.where.items())


def _accepts(wanted: Any, value: Any) -> bool:
    """A ``where`` value: the config value a column needs, or a list of the values it takes."""
    return value in wanted if isinstance(wanted, (list, tuple)) else value == wanted


@dataclasses.dataclass(frozen=True)
class TableSpec:
    title: str
    paper_table: str  # the table's id: its key in bench/reference/*.csv
    columns: tuple[Column, ...]
    datasets: tuple[str, ...]
    metrics: tuple[str, ...]
    # The zero-shot table takes only records whose method metadata says zero_shot = True,
    # every other table only records that do not.
    zero_shot: bool = False
    # The datasets that get the paper's numbers (None: every dataset, by its capitalised name);
    # state_protocol: rows name their split protocol.
    paper_datasets: Mapping[str, str] | None = None
    state_protocol: bool = False
    # Datasets the paper reports that no public copy holds: their rows show the paper's numbers
    # beside "no public data" and never take a record.
    no_public_data: tuple[str, ...] = ()


def read_table_file(key: str, required: bool = True) -> list[dict[str, Any]]:
    """The entries under ``key`` of the table file (``spec``: the tables; ``claim``: the papers'
    claims, :mod:`bench.claims`); a key not ``required`` may be absent (no entries)."""
    text = resources.files("bench").joinpath(SPEC_FILE).read_text()
    try:
        found = tomllib.loads(text)
        return found[key] if required else found.get(key, [])
    except (tomllib.TOMLDecodeError, KeyError) as error:
        raise BenchError(f"bench/{SPEC_FILE}: not a valid table file: {error}") from None


def _column(entry: Mapping[str, Any], table: str, where_from: str) -> Column:
    unknown = set(entry) - {"label", "method", "where", "paper_label", "paper_table", "family"}
    if unknown or "label" not in entry or "method" not in entry:
        what = f"unknown key '{sorted(unknown)[0]}'" if unknown else "a column needs 'label' and 'method'"
        raise BenchError(f"{where_from}: {what}")
    family = entry.get("family")
    if family is not None:
        check_option(f"{where_from}, column '{entry['label']}': family", family, FAMILIES, None)
    return Column(table=table, label=entry["label"], method=entry["method"], where=dict(entry.get("where", {})),
                  paper_label=entry.get("paper_label"), paper_table=entry.get("paper_table"), family=family)


def declared_columns() -> dict[str, list[Column]]:
    """The columns registered methods declare (``Method.table_columns``), by table id, in the
    order of the methods' names."""
    found: dict[str, list[Column]] = {}
    registry = methods()
    for name in registry.names():
        for declared in registry.get(name).table_columns:
            fields = {field.name: getattr(declared, field.name) for field in dataclasses.fields(TableColumn)}
            found.setdefault(declared.table, []).append(Column(**fields, method=name))
    return found


def _spec(entry: dict[str, Any], extra: list[Column]) -> TableSpec:
    where_from = f"bench/{SPEC_FILE}, table '{entry.get('id')}'"
    columns = tuple(_column(column, entry.get("id"), where_from) for column in entry.get("columns", ())) + tuple(extra)
    labels = [column.label for column in columns]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise BenchError(f"{where_from}: two columns are labelled '{repeated[0]}'")
    try:
        return TableSpec(title=entry["title"], paper_table=entry["id"], columns=columns,
                         datasets=tuple(entry["datasets"]), metrics=tuple(entry["metrics"]),
                         zero_shot=bool(entry.get("zero_shot", False)), paper_datasets=entry.get("paper_datasets"),
                         state_protocol=bool(entry.get("state_protocol", False)),
                         no_public_data=tuple(entry.get("no_public_data", ())))
    except KeyError as error:
        raise BenchError(f"{where_from}: lacks key {error}") from None


def table_registry() -> Registry:
    """``bench table`` names -> their specs (the file's columns, then the methods' own)."""
    entries = read_table_file("spec")
    ids = {entry.get("id") for entry in entries}
    registry: Registry = Registry("table")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_name.setdefault(entry["table"], []).append(entry)

    def loader(group: list[dict[str, Any]]):
        def load() -> list[TableSpec]:
            extra = declared_columns()
            unknown = sorted(set(extra) - ids)
            if unknown:
                owner = extra[unknown[0]][0].method
                raise BenchError(f"method '{owner}' declares a column of table '{unknown[0]}', which "
                                 f"bench/{SPEC_FILE} does not declare; known: {', '.join(sorted(ids))}")
            return [_spec(entry, extra.get(entry["id"], [])) for entry in group]
        return load

    for name, group in by_name.items():
        registry.add(name, loader(group))
    return registry
