"""The one identity hash: canonical, and the very values stored keys (work folders, sweep
identities, RecBole's finished trainings) were made with. A change to what it hashes would
orphan every work folder and cache made so far: these pins say so."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from bench import config as config_module
from bench.identity import identity_digest, record_identity, run_identity
from bench.method import RunContext
from bench.registry import methods
from bench.runner import RunRequest, work_dir_for
from bench.statistics import seed_group_key

DATA_DIGEST = "0123456789abcdef"


def test_the_digest_is_canonical_json_whatever_the_order() -> None:
    expected = hashlib.sha256(b'{"a": 1, "b": [2, "x"]}').hexdigest()[:16]
    assert identity_digest({"b": [2, "x"], "a": 1}) == identity_digest({"a": 1, "b": [2, "x"]}) == expected
    assert identity_digest({"b": (2, "x"), "a": 1}) == expected  # a tuple as the list a record holds
    assert identity_digest({"path": Path("p")}) == identity_digest({"path": "p"})  # values JSON cannot hold: their str


# Options whose cpu-profile default changed after the pinned folders were made, set back.
EARLIER_DEFAULTS = {"tiger": {"output_head": "vocabulary"},
                    "setrec": {"dropout_rate": "0.1", "lr_schedule": "linear", "warmup_steps": "0", "max_history": "50"}}


def resolved(method: str) -> config_module.ResolvedConfig:
    method_class = methods().get(method)
    threads = {"threads": "1"} if "threads" in {f.name for f in dataclasses.fields(method_class.config_class)} else {}
    return config_module.resolve(method, method_class.config_class, method_class.profiles, "cpu", {},
                                 {**threads, **EARLIER_DEFAULTS.get(method, {})})


# Work folders and sweep identities of the cpu profile's defaults on demo (threads=1, seed 42), as
# the harness named them before run identity had a module of its own.
@pytest.mark.parametrize("method, folder, identity", [
    ("gru4rec", "gru4rec-demo-fa16d18571ac", "fa16d18571acd45a"),
    ("idgenrec", "idgenrec-demo-f260b80f00f5", "f260b80f00f58e12"),
    ("pop", "pop-demo-0667bb6179e4", "0667bb6179e4716c"),
    ("tiger", "tiger-demo-003b0bf10df2", "003b0bf10df2e738"),
    ("unisrec", "unisrec-demo-515fcdca7f8f", "515fcdca7f8fe6b4"),
    ("setrec", "setrec-demo-b2a09c9f46f3", "b2a09c9f46f3ff54"),
])
def test_existing_work_folders_and_sweep_identities_are_found_again(method: str, folder: str, identity: str) -> None:
    run = resolved(method)
    assert work_dir_for(RunRequest(method=method, dataset="demo", seed=42), run, DATA_DIGEST).name == folder
    assert run_identity(method, "demo", DATA_DIGEST, run.to_dict(), 42) == identity
    record = {"method": method, "dataset": "demo", "split": {"digest": DATA_DIGEST}, "config": run.to_dict(),
              "seed": 42}
    assert record_identity(record) == identity
    # A seed group is the identity without the seed: seeds of one configuration share it.
    assert seed_group_key(record) == seed_group_key({**record, "seed": 7}) != seed_group_key(
        {**record, "config": resolved("sasrec").to_dict()})


def test_recbole_finished_trainings_keep_their_fingerprint(tmp_path: Path) -> None:
    from methods.recbole_baselines import GRU4Rec

    run = resolved("gru4rec")
    method = GRU4Rec(run.method, RunContext(work_dir=tmp_path, seed=42, profile="cpu"))
    assert method._fingerprint(DATA_DIGEST, dataclasses.asdict(run.method)) == "3d085c40da16c1c9"
