"""Every run the project's sweep files plan fills a column of some table that has a row for its
dataset: a run no cell takes would cost its core-hours and never show (as the Table 4 sweep's
TIGER runs on residual k-means codes did while the TIGER column took RQ-VAE codes only)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.runner import RunRequest, resolve_run_config
from bench.sweep import load_sweep
from bench.tables import table_registry

SWEEPS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "sweeps").glob("*.toml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[path.stem for path in SWEEPS])
def test_every_planned_run_fills_a_table_column(path: Path) -> None:
    columns = [(column, spec.datasets) for name in table_registry().names()
               for spec in table_registry().get(name) for column in spec.columns]
    missing = []
    for point in load_sweep(path).points:
        # Resolved as the sweep resolves it (bench.sweep.plan_sweep).
        _, resolved = resolve_run_config(RunRequest(method=point.method, dataset=point.dataset,
                                                    sets=dict(point.sets), profile=point.profile))
        record = {"method": point.method, "config": {"method": dataclasses.asdict(resolved.method)}}
        if not any(column.matches(record) and point.dataset in datasets for column, datasets in columns):
            missing.append(point.label)
    assert not missing, f"{path.name}: no table column takes {missing}"
