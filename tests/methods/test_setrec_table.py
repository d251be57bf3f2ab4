"""`bench table setrec`: rows datasets x (all / warm / cold metrics, ranked among all items and
within their group, inference seconds), paper numbers only beside the paper's own split and its
own warm/cold protocol, the fastest method marked on the seconds row."""

from __future__ import annotations

import numpy as np

from bench.results import write_record
from bench.tables import INFERENCE_SECONDS, metric_value, render_table

SETREC_CONFIG = {"cf_token": True, "semantic_tokens": True, "shared_query": False, "item_positions": "shared"}


def record(method: str, dataset: str, protocol: str, scale: float, seconds: float, config: dict | None = None,
           run: int = 0) -> dict:
    rng = np.random.default_rng(run)
    users = 40
    per_user = {name: np.clip(rng.random(users) * scale, 0, 1) for name in ("Recall@5", "Recall@10", "NDCG@5",
                                                                           "NDCG@10", "HR@5", "HR@10")}
    found = {"schema": 1, "run_id": f"run-{method}-{dataset}-{run}", "method": method, "dataset": dataset,
             "split": {"protocol": protocol, "digest": f"digest-{dataset}", "phase": "test"},
             "config": {"method": config or {}, "eval": {"mask_history": False}}, "seed": 42,
             "started_at": f"2025-01-01T00:00:{run:02d}", "inference": {"seconds": seconds},
             "metrics": {name: float(values.mean()) for name, values in per_user.items()}, "per_user": per_user}
    for block, share in (("warm", 2), ("cold", 4), ("warm_in_group", 1.5), ("cold_in_group", 1.2)):
        found[f"metrics_{block}"] = {name: value / share for name, value in found["metrics"].items()}
        found[f"per_user_{block}"] = {name: values / share for name, values in per_user.items()}
    return found


def test_setrec_table_renders_blocks_paper_numbers_and_protocol(tmp_path):
    write_record(tmp_path, record("setrec", "setrec-toys", "files", 0.9, 12.0, SETREC_CONFIG, run=1))
    write_record(tmp_path, record("idgenrec", "setrec-toys", "files", 0.1, 120.0,
                                  {"training": "alternate", "ids": "user+item"}, run=2))
    write_record(tmp_path, record("setrec", "toys", "leave-one-out", 0.5, 30.0, SETREC_CONFIG, run=3))
    # An ablation record is not the SETRec column.
    write_record(tmp_path, record("setrec", "setrec-toys", "files", 1.0, 1.0, {**SETREC_CONFIG, "cf_token": False},
                                  run=4))
    text = render_table("setrec", tmp_path, with_paper=True)
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in text.splitlines()
            if line.startswith("| setrec-toys") or line.startswith("| toys")}
    assert ("setrec-toys (files)", "Cold N@10") in rows and ("toys (leave-one-out)", "Warm R@5") in rows
    header = next(line for line in text.splitlines() if line.startswith("| Dataset"))
    setrec = [cell.strip() for cell in header.split("|")].index("SETRec")  # plugins may add columns after it
    # The paper's Toys numbers sit beside the published split only; the leave-one-out Toys row
    # has none.
    assert "(0.0189)" in rows[("setrec-toys (files)", "All R@10")].split("|")[setrec]  # SETRec, Toys, Table 1
    assert "(-)" in rows[("toys (leave-one-out)", "All R@10")] and "(0.0" not in rows[("toys (leave-one-out)", "All R@10")]
    # SETRec's paper ranked cold targets among cold items: its cold Recall@10 (0.0812) sits beside
    # our within-group row, not beside the row of cold targets ranked among all items.
    assert "(0.0812)" in rows[("setrec-toys (files)", "Cold among cold R@10")].split("|")[setrec]
    assert "(0.0" not in rows[("setrec-toys (files)", "Cold R@10")]
    assert "Cold among cold: ranked within their own group" in text
    seconds = rows[("setrec-toys (files)", INFERENCE_SECONDS)]
    assert "**12.0**" in seconds and "10.00x" in seconds  # fastest bold, to 0.1 s; 120 s / 12 s
    assert "**" in rows[("setrec-toys (files)", "All N@5")].split("|")[setrec]  # SETRec column best


def test_recall_falls_back_to_hr_with_one_target_per_user():
    single = {"metrics": {"HR@10": 0.25, "NDCG@10": 0.1}, "metrics_warm": {"HR@10": 0.3}}
    assert metric_value(single, "All R@10") == 0.25 and metric_value(single, "Warm R@10") == 0.3
    assert metric_value(single, "Cold R@10") is None
    assert metric_value({**single, "metrics_cold_in_group": {"HR@10": 0.4}}, "Cold among cold R@10") == 0.4
    assert metric_value({"metrics": {"Recall@10": 0.5, "HR@10": 0.7}}, "All R@10") == 0.5
