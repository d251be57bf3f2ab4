"""RecBole baselines: data hand-off without leakage, score columns in harness order,
resume, and the compatibility patches. Each model trains one epoch on a tiny fixture."""

from __future__ import annotations

import dataclasses
import io
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench import recbole_compat
from bench.data.dataset import Dataset, build_dataset
from bench.data.split import Split, leave_one_out
from bench.method import RunContext, TrainingData
from methods import recbole_atomic, recbole_baselines

MODELS = {"gru4rec": recbole_baselines.GRU4Rec, "caser": recbole_baselines.Caser, "hgn": recbole_baselines.HGN,
          "sasrec": recbole_baselines.SASRec, "bert4rec": recbole_baselines.BERT4Rec,
          "fdsa": recbole_baselines.FDSA, "s3rec": recbole_baselines.S3Rec}
MAX_LENGTH = 5  # shorter than the longest history, so truncation is exercised
TINY = {"epochs": 1, "pretrain_epochs": 1, "threads": 1, "train_batch_size": 64, "max_seq_length": MAX_LENGTH,
        "stopping_step": 1, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "embedding_size": 16}


def fixture_dataset() -> Dataset:
    """Users walk along a chain of items (the next item is the last one + 1). One user has a
    single training item; one user's test item occurs nowhere else and has no categories.
    Item indices are then shuffled, so RecBole's own numbering differs from the harness's."""
    rng = np.random.default_rng(3)
    sequences = []
    for user in range(40):
        start, length = int(rng.integers(0, 22)), int(rng.integers(4, 10))
        sequences.append((f"u{user}", [f"i{start + step}" for step in range(length)]))
    sequences.append(("lone", ["i0", "i1", "i2"]))
    sequences.append(("fresh", ["i3", "i4", "i5", "i_fresh"]))
    text = {f"i{i}": f"title: thing {i}" for i in range(30)}
    attributes = {f"i{i}": ["toys", f"group {i % 3}"] for i in range(30)}
    ordered = build_dataset("fixture", sequences, text, attributes, {"format": "test"})
    permutation = np.random.default_rng(5).permutation(ordered.n_items)
    inverse = np.argsort(permutation)
    return Dataset(name="fixture", user_ids=ordered.user_ids,
                   item_ids=[ordered.item_ids[i] for i in inverse],
                   sequences=[permutation[s] for s in ordered.sequences],
                   item_text=[ordered.item_text[i] for i in inverse],
                   item_attributes=[ordered.item_attributes[i] for i in inverse], metadata={})


DATASET = fixture_dataset()
SPLIT = leave_one_out(DATASET)
FRESH_ITEM = DATASET.item_ids.index("i_fresh")
LONE_USER = DATASET.user_ids.index("lone")


def make_method(name: str, work_dir: Path):
    method_class = MODELS[name]
    fields = {f.name for f in dataclasses.fields(method_class.config_class)}
    config = method_class.config_class(**{k: v for k, v in TINY.items() if k in fields})
    return method_class(config, RunContext(work_dir=work_dir, seed=0, profile="cpu", show_progress=False))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One trained instance per model, shared by the tests of this module."""
    torch.set_num_threads(1)
    cache = {}

    def get(name: str):
        if name not in cache:
            method = make_method(name, tmp_path_factory.mktemp(name))
            method.fit(TrainingData(dataset=DATASET, split=SPLIT))
            cache[name] = method
        return cache[name]

    return get


def test_fixture_numbers_items_unlike_recbole(fitted):
    method = fitted("sasrec")
    # RecBole ids are 1..n in order of first appearance in its files; the fixture's are shuffled.
    assert sorted(method.item_to_internal) == list(range(1, DATASET.n_items + 1))
    assert not np.array_equal(method.item_to_internal, np.arange(1, DATASET.n_items + 1))


@pytest.mark.parametrize("name", list(MODELS))
def test_model_scores_every_item_in_harness_order(name, fitted):
    method = fitted(name)
    users = np.arange(SPLIT.n_users)
    scores = method.score(users, SPLIT.histories("test"))
    assert scores.shape == (SPLIT.n_users, DATASET.n_items)
    assert np.isfinite(scores).all()
    assert np.isfinite(scores[:, FRESH_ITEM]).all()  # never trained on, still ranked
    assert not np.allclose(scores[0], scores[1])
    # Column i is RecBole's item with token "i", the harness's item i.
    tokens = method.recbole_dataset.id2token("item_id", method.item_to_internal)
    assert list(tokens) == [str(i) for i in range(DATASET.n_items)]
    facts = method.metadata()
    assert facts["epochs_trained"] == 1 and facts["best_epoch"] == 0 and facts["stopped_by"] == "max epochs"
    assert facts["loss_type"] == "CE" and facts["max_seq_length"] == MAX_LENGTH and facts["n_parameters"] > 0


def _by_user(feat, item_to_harness: dict[int, int]) -> dict[int, list[tuple[float, list[int], int]]]:
    rows: dict[int, list] = {}
    for user, stamp, history, length, target in zip(
            feat["user_id"].tolist(), feat["timestamp"].tolist(), feat["item_id_list"].tolist(),
            feat["item_length"].tolist(), feat["item_id"].tolist()):
        rows.setdefault(user, []).append(
            (stamp, [item_to_harness[i] for i in history[:length]], item_to_harness[target]))
    return {user: sorted(samples) for user, samples in rows.items()}


@pytest.mark.parametrize("name", list(MODELS))
def test_recbole_trains_on_exactly_the_training_part(name, fitted):
    method = fitted(name)
    item_to_harness = {internal: item for item, internal in enumerate(method.item_to_internal)}
    user_to_harness = {internal: user for user, internal in enumerate(method.user_to_internal)}
    training = _by_user(method.train_data.dataset.inter_feat, item_to_harness)
    validation = _by_user(method.valid_data.dataset.inter_feat, item_to_harness)
    seen_train = {user_to_harness[u]: samples for u, samples in training.items()}
    seen_valid = {user_to_harness[u]: samples for u, samples in validation.items()}
    users_with_samples = {u for u, history in enumerate(SPLIT.train) if len(history) >= 2}
    assert set(seen_train) == users_with_samples and set(seen_valid) == users_with_samples
    assert LONE_USER not in seen_train  # its validation item must not become a training target
    for user in users_with_samples:
        train = SPLIT.train[user].tolist()
        samples = seen_train[user]
        # Each sample predicts item k from the (truncated) items before it, for k = 2..len(train).
        assert [target for _, _, target in samples] == train[1:]
        assert [history for _, history, _ in samples] == [train[:k][-MAX_LENGTH:] for k in range(1, len(train))]
        ((_, valid_history, valid_target),) = seen_valid[user]
        assert valid_target == SPLIT.valid_target[user] and valid_history == train[-MAX_LENGTH:]
    written = [samples for per_user in (seen_train, seen_valid) for samples in per_user.values()]
    assert all(FRESH_ITEM != target and FRESH_ITEM not in history for rows in written for _, history, target in rows)


def test_atomic_files_hold_no_test_item(tmp_path):
    facts = recbole_atomic.write_atomic_files(DATASET, SPLIT, tmp_path, with_categories=True)
    inter = pd.read_csv(tmp_path / "bench.inter", sep="\t", dtype=str)
    for user, rows in inter.groupby("user_id:token", sort=False):
        history = SPLIT.train[int(user)]
        expected = history.tolist() + ([int(SPLIT.valid_target[int(user)])] if len(history) >= 2 else [])
        assert rows["item_id:token"].astype(int).tolist() == expected
        assert rows["timestamp:float"].astype(float).tolist() == list(range(len(expected)))
    assert facts["validation_users"] == SPLIT.n_users - 1 and facts["items_without_categories"] == 1
    items = pd.read_csv(tmp_path / "bench.item", sep="\t", dtype=str)
    assert items["item_id:token"].astype(int).tolist() == list(range(DATASET.n_items))
    assert items.loc[FRESH_ITEM, "categories:token_seq"] == recbole_atomic.NO_CATEGORY


def test_score_reads_the_most_recent_items_through_the_id_mapping(fitted):
    method = fitted("gru4rec")
    original = method.model.full_sort_predict
    n_internal = DATASET.n_items + 1  # RecBole's padding id 0 comes first

    def history_indicator(interaction):
        # Scores 1 exactly on the (RecBole) items of each row's input sequence.
        rows = interaction["item_id_list"]
        scores = torch.zeros(len(rows), n_internal)
        scores.scatter_(1, rows, 1.0)
        return scores

    histories = [np.array([3, 1, 4, 1, 5, 9, 2, 6]), np.array([FRESH_ITEM]), np.array([7, 0])]
    method.model.full_sort_predict = history_indicator
    try:
        scores = method.score(np.array([0, 1, 2]), histories)
    finally:
        method.model.full_sort_predict = original
    expected = np.zeros((3, DATASET.n_items))
    for row, history in enumerate(histories):
        expected[row, history[-MAX_LENGTH:]] = 1.0
    np.testing.assert_array_equal(scores, expected)


def test_finished_run_is_loaded_not_trained_again(tmp_path, capsys, monkeypatch):
    torch.set_num_threads(1)
    first = make_method("sasrec", tmp_path)
    first.fit(TrainingData(dataset=DATASET, split=SPLIT))
    assert "epoch 0" not in capsys.readouterr().err  # quiet: no epoch lines
    expected = first.score(np.arange(SPLIT.n_users), SPLIT.histories("test"))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(recbole_baselines.RecBoleSequential, "_train", no_training)
    second = make_method("sasrec", tmp_path)
    second.fit(TrainingData(dataset=DATASET, split=SPLIT))
    np.testing.assert_array_equal(second.score(np.arange(SPLIT.n_users), SPLIT.histories("test")), expected)
    assert second.metadata()["best_epoch"] == first.metadata()["best_epoch"]


def test_time_budget_stops_after_a_validation_keeping_the_best(tmp_path):
    torch.set_num_threads(1)
    method = make_method("sasrec", tmp_path)
    method.config = dataclasses.replace(method.config, epochs=5, stopping_step=5, max_train_minutes=1e-9)
    method.fit(TrainingData(dataset=DATASET, split=SPLIT))
    facts = method.metadata()
    assert facts["stopped_by"] == "time budget" and facts["epochs_trained"] == 1 and facts["best_epoch"] == 0
    assert np.isfinite(method.score(np.arange(3), SPLIT.histories("test")[:3])).all()


@pytest.mark.parametrize("echo, shown", [(True, "[sasrec] epoch 3 training [time: 1.00s]\n"), (False, "")])
def test_only_epoch_lines_are_echoed_and_only_when_asked(echo, shown):
    stream = io.StringIO()
    with recbole_compat.recbole_logging("sasrec", echo=echo, stream=stream):
        logging.getLogger().info("\x1b[1;32mepoch 3 training\x1b[0m [time: 1.00s]")
        logging.getLogger().info("[Training]: train_batch_size = [64]")
    assert stream.getvalue() == shown


def test_numpy_aliases_restored_when_missing(monkeypatch):
    monkeypatch.delattr(np, "float_", raising=False)
    recbole_compat.ensure_compatible()
    assert np.float_ is np.float64


def test_recboles_models_leave_autograd_anomaly_detection_off():
    """RecBole's sequential models' package switches anomaly detection on for the whole process
    at import (sine.py); in a fresh process, after the harness's patch and RecBole's model
    lookup, it is off, so a later run in the same process (SETRec after its CF tokenizer)
    trains at full speed."""
    code = ("import torch; from bench import recbole_compat; recbole_compat.ensure_compatible(); "
            "from recbole.utils import get_model; get_model('SASRec'); print(torch.is_anomaly_enabled())")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip().splitlines()[-1] == "False"


def test_recbole_config_ignores_the_command_line(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["bench", "--epochs=999", "--learning_rate=5"])
    config = recbole_compat.make_config("SASRec", {"dataset": "bench", "data_path": str(tmp_path), "epochs": 3,
                                                   "use_gpu": False, "gpu_id": "",
                                                   "train_neg_sample_args": None})
    assert config["epochs"] == 3 and config["learning_rate"] == 0.001


def test_series_length_is_per_element_only_inside_the_block():
    series = pd.Series([np.array([1, 2, 3]), np.array([4])])
    original = pd.Series.agg
    with recbole_compat.elementwise_series_len():
        assert series.agg(len).tolist() == [3, 1]
        assert pd.Series([1, 2]).agg("sum") == 3  # other aggregations keep their meaning
    assert pd.Series.agg is original


class _Opaque:
    """Not a tensor: torch's weights-only loader refuses it."""


def test_full_unpickling_only_for_files_in_the_trusted_folder(tmp_path):
    inside, outside = tmp_path / "work" / "a.pth", tmp_path / "b.pth"
    inside.parent.mkdir()
    torch.save({"config": _Opaque()}, inside)
    torch.save({"config": _Opaque()}, outside)
    with recbole_compat.trusted_checkpoints(tmp_path / "work"):
        assert isinstance(torch.load(inside)["config"], _Opaque)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(outside)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(inside)
