"""``bench report``: a folder that opens offline, every image it shows exists, every table is there."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.report import build_report
from bench.report.plots import _series, has_curve
from bench.results import write_record
from bench.tables import table_registry

USERS = 60
# As the engine's loop records them, timings included (they are not metrics to plot).
ENGINE_CURVE = [{"epoch": e, "train_loss": 2.0 / e, "validation": {"NDCG@10": 0.1 * e, "HR@10": 0.15 * e},
                 "train_seconds": 1.0, "validation_seconds": 40.0} for e in (1, 2, 3)]
RECBOLE_CURVE = [{"epoch": 0, "train_loss": 9.1, "valid_ndcg@10": 0.01}, {"epoch": 1, "train_loss": 8.2}]
IDGENREC_CURVE = [{"phase": "recommender", "round": 1, "epoch": 1, "train_loss": 3.0, "validation": {"NDCG@10": 0.2}},
                  {"phase": "generator", "round": 1, "epoch": 1, "train_loss": 2.5}]


def fixture_record(method: str, seed: int, rate: float, number: int, method_config=None, metadata=None) -> dict:
    rng = np.random.default_rng(number)
    hr10 = (rng.random(USERS) < rate).astype(float)
    hr5 = hr10 * (rng.random(USERS) < 0.6)
    ndcg10 = hr10 * rng.uniform(0.29, 1.0, USERS)
    per_user = {"HR@5": hr5, "NDCG@5": np.minimum(ndcg10, hr5), "HR@10": hr10, "NDCG@10": ndcg10}
    return {"schema": 1, "run_id": f"20260101T0000{number:02d}-{method}-{number:06x}", "method": method,
            "dataset": "toys", "dataset_summary": {"users": USERS},
            "dataset_source": {"share_sequences_in_ascending_id_order": 0.18},
            "split": {"protocol": "leave-one-out", "digest": "fixture", "phase": "test"}, "profile": "cpu",
            "config": {"profile": "cpu", "method": method_config or {},
                       "eval": {"mask_history": False, "batch_size": 256, "cutoffs": [5, 10]}},
            "seed": seed, "versions": {"python": "3.11", "torch": "2.13.0+cpu"},
            "hardware": {"device": "cpu", "processes": 1}, "started_at": f"2026-01-01T00:00:{number:02d}+00:00",
            "wall_time_seconds": {"fit": 1.5, "evaluate": 0.2},
            "metrics": {name: float(values.mean()) for name, values in per_user.items()},
            "method_metadata": metadata or {}, "per_user": per_user}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    alternate = {"training": "alternate", "ids": "user+item"}
    records = [
        fixture_record("pop", 1, 0.05, 1), fixture_record("pop", 2, 0.05, 2),
        fixture_record("sasrec", 1, 0.3, 3, {"loss_type": "CE"}, {"training_curve": ENGINE_CURVE, "best_epoch": 3}),
        fixture_record("sasrec", 2, 0.32, 4, {"loss_type": "CE"}),
        fixture_record("gru4rec", 42, 0.2, 5, {"loss_type": "CE"}, {"training_curve": RECBOLE_CURVE}),
        fixture_record("idgenrec", 42, 0.25, 6, alternate, {"training_curve": IDGENREC_CURVE})
        | {"inference": {"seconds": 12.345, "users": USERS}},
        fixture_record("idgenrec", 42, 0.1, 7, {"training": "id-only", "ids": "user+item"}),
        fixture_record("idgenrec", 42, 0.15, 8, {"training": "alternate", "ids": "item"}),
        fixture_record("idgenrec", 42, 0.05, 9, alternate, {"zero_shot": True}),
    ]
    for record in records:
        write_record(results, record)
    return results


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "img":
            self.images.append(attributes["src"])
        if tag == "a":
            self.links.append(attributes["href"])


def _parse(index: Path) -> tuple[str, _Links]:
    text = index.read_text()
    links = _Links()
    links.feed(text)
    return text, links


def test_report_images_exist_every_table_is_present_and_the_folder_moves(store, tmp_path):
    out = tmp_path / "report"
    index = build_report(store, out)
    assert index == out / "index.html"
    text, links = _parse(index)
    for name in table_registry().names():
        for spec in table_registry().get(name):
            assert f">{spec.title}</h3>" in text, spec.title
    assert "No runs in the store for this table yet" not in text  # the fixture fills every table
    assert len(links.images) >= 4 * 5 + 3  # 4 metrics x 5 tables, 3 training curves
    curves = [src for src in links.images if src.startswith("plots/curve-")]
    assert len(curves) == 3
    assert " ± " in text  # pop and sasrec have two seeds each
    assert ">12.3</" in text and "12.3450" not in text  # table seconds to 0.1, as `bench table` prints them
    assert text.count("core-hours: 0.00") == 9  # each run's row: 1.7 s of fit and test ranking (bench/run_cost.py)
    # The papers' claims, as `bench claims` checks them on the same cells.
    claims = text.split('<h2 id="claims">Claims</h2>')[1].split('<h2 id="curves">')[0]
    assert "alternate-training (Table 5: training strategy)" in claims and "<code>bench table</code>" in claims
    assert "Toys: " in claims and "ID-only" in claims and "No record: Rec-only." in claims
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    for src in links.images:
        assert not src.startswith(("/", "http:", "https:")) and (moved / src).is_file(), src
        assert (moved / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [href for href in links.links if href.startswith("records/")]
    assert len(set(records)) == 9 and all((moved / href).is_file() for href in records)
    # Each table cell links to its record (every seed's), and says why those records.
    sasrec = sorted(href for href in set(records) if "-sasrec-" in href)
    assert len(sasrec) == 2 and all(records.count(href) > 1 for href in sasrec)
    assert 'title="20260101T000003-sasrec-000003, 20260101T000004-sasrec-000004; only configuration' in text
    anchors = [href[1:] for href in links.links if href.startswith("#") and href != "#"]
    assert all(anchor in links.ids for anchor in anchors)
    assert not list(moved.rglob("*.tmp"))


def test_rebuilding_removes_plots_of_runs_no_longer_in_the_store(store, tmp_path):
    out = tmp_path / "report"
    build_report(store, out)
    curve = next(store.rglob("*-gru4rec-*.json"))
    curve.unlink()
    _, links = _parse(build_report(store, out))
    on_disk = {f"plots/{path.name}" for path in (out / "plots").glob("*.png")}
    assert on_disk == set(links.images)
    assert not any("gru4rec" in src for src in links.images)


@pytest.mark.parametrize("curve, x_label, losses, validation", [
    (ENGINE_CURVE, "epoch", {"train_loss"}, {"NDCG@10", "HR@10"}),
    (RECBOLE_CURVE, "epoch", {"train_loss"}, {"valid_ndcg@10"}),
    (IDGENREC_CURVE, "evaluation (phases in order)", {"train_loss"}, {"NDCG@10"}),
])
def test_training_curve_formats_are_read(curve, x_label, losses, validation):
    xs, label, loss_series, validation_series = _series(curve)
    assert label == x_label and len(xs) == len(curve)
    assert set(loss_series) == losses and set(validation_series) == validation
    assert has_curve(curve) and not has_curve([]) and not has_curve("nonsense")


def test_report_refuses_a_missing_store(tmp_path):
    with pytest.raises(BenchError, match="results store not found"):
        build_report(tmp_path / "nothing", tmp_path / "out")
