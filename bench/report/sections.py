"""What the report's page shows, as data: its table and curve sections, and the names that
link them (an anchor's slug, a record's path inside the report). The builder
(:mod:`bench.report.build`) fills them, the page (:mod:`bench.report.page`) renders them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

RECORDS = "records"


@dataclasses.dataclass
class TableSection:
    name: str  # registry name (standard, ablation, ...)
    title: str
    headers: list[str]
    rows: list[tuple[str, str, list, str]]  # (dataset label, metric, cells, improvement)
    charts: dict[str, list[tuple[str, str]]]  # dataset label -> [(metric, image path)]


@dataclasses.dataclass
class CurveSection:
    record: dict[str, Any]
    image: str


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def record_link(record: dict[str, Any]) -> str:
    return f"{RECORDS}/{record['dataset']}/{record['method']}/{Path(record['_path']).name}"
