"""IDGenRec's zero-shot model selection: on the foundation sources' validation items (the
items UniSRec's pre-training selects on), ranked among the foundation's catalogue, with the
engine's validation scorer; nothing of the evaluated dataset is read before its evaluation,
and the tested recommender and generator are those of the best validation NDCG@10."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import EvalConfig
from bench.data.split import leave_one_out
from bench.engine.selection import SELECTION_METRIC, Validator
from bench.evaluation import protocol
from bench.method import RunContext
from bench.data.fusion import FoundationConfig, build_fusion
from methods.idgenrec.corpus import fusion_corpus
from tests.conftest import tiny_dataset
from tests.methods.test_idgenrec_method import fit
from tests.methods.test_unisrec import Guarded, write_source


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def sources(tmp_path: Path) -> dict:
    return {"foundation_datasets": ("beauty", "sports"), "foundation_users": 20,
            "foundation_data_dirs": (str(write_source(tmp_path / "beauty", 1)), str(write_source(tmp_path / "sports", 2)))}


def test_foundation_corpus_is_the_fusion_with_user_texts_from_training_parts_only(sources) -> None:
    config = FoundationConfig(**sources)
    fusion = build_fusion(dataclasses.replace(config, foundation_users=12), tiny_dataset(), seed=5)
    corpus = fusion_corpus(fusion, with_users=True, user_max_items=2)
    assert corpus.split is fusion.split and corpus.train_sequences == fusion.split.train
    assert corpus.item_names == fusion.dataset.item_ids and corpus.item_texts == fusion.dataset.item_text
    assert len(corpus.split.phase_users("valid")) == 24 and len(corpus.split.phase_users("test")) == 0
    # A user's text: its two latest training items, never its validation item.
    for user in (0, 13):
        history = fusion.split.train[user][-2:].tolist()
        assert corpus.user_texts[user] == "; ".join(fusion.dataset.item_text[item] for item in history)
        valid_text = fusion.dataset.item_text[int(fusion.split.valid_items[user][0])]
        assert valid_text not in corpus.user_texts[user]


def test_zero_shot_fit_selects_on_source_validation_items_and_reads_nothing_of_the_target(
        tmp_path: Path, sources, monkeypatch) -> None:
    target = tiny_dataset(n_users=24, n_items=20, seed=9)
    split = leave_one_out(target)
    guarded_split = dataclasses.replace(split, **{field.name: Guarded(getattr(split, field.name))
                                                  for field in dataclasses.fields(split)
                                                  if isinstance(getattr(split, field.name), list)})
    guarded_target = dataclasses.replace(target, sequences=Guarded(target.sequences))
    calls = []
    original = protocol.evaluate

    def recording_evaluate(method, split, phase, config, context, users=None):
        calls.append((split, phase, None if users is None else users.copy()))
        return original(method, split, phase, config, context, users=users)

    monkeypatch.setattr(protocol, "evaluate", recording_evaluate)
    Guarded.armed = True
    try:
        method = fit(tmp_path, "zero", guarded_target, guarded_split, rounds=2, epochs=2, patience=0,
                     validation_users=15, **sources)
    finally:
        Guarded.armed = False
    found = method.metadata()
    assert found["zero_shot"] is True and set(found["trained_on"]) == {"beauty", "sports"}
    # Every validation ranked the same 15 of the 40 source users' validation items, none of the target.
    assert len(calls) == len(found["training_curve"]) == 4  # 2 recommender phases x 2 epochs
    for ranked, phase, users in calls:
        assert ranked is method.corpus.split and phase == "valid"
        np.testing.assert_array_equal(users, calls[0][2])
    assert len(calls[0][2]) == 15 and calls[0][2].max() < 40
    selection = found["selection"]
    assert selection["n_users"] == 15 and selection["of_users"] == 40 and selection["patience"] == 0
    assert "beauty, sports" in selection["on"] and found["selected_phase"] in (0, 2)
    assert [point["phase"] for point in found["training_curve"]] == [0, 0, 2, 2]
    # The target is evaluated afterwards, with IDs for its own items.
    context = RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)
    result = original(method, split, "test", EvalConfig(), context)
    assert len(method.item_ids) == target.n_items and len(result.users) == split.n_users
    assert np.all((result.per_user["NDCG@10"] >= 0) & (result.per_user["NDCG@10"] <= 1))


def test_zero_shot_tests_the_recommender_and_generator_of_the_best_validation(tmp_path: Path, sources,
                                                                             monkeypatch) -> None:
    """Scripted NDCG@10 per validation (the ranking itself still runs): the first epoch of the
    first recommender phase is the best, so its weights must be the tested ones, with the
    generator of that phase (the second round's generator phase changed it)."""
    script = iter([0.5, 0.2, 0.3, 0.4])
    seen = []
    original = Validator.__call__

    def scripted(self):
        metrics = original(self)
        assert self.split is self.method.corpus.split
        seen.append(({k: v.detach().clone() for k, v in self.method.recommender.state_dict().items()},
                     {k: v.detach().clone() for k, v in self.method.generator.model.state_dict().items()}))
        return {**metrics, SELECTION_METRIC: next(script)}

    monkeypatch.setattr(Validator, "__call__", scripted)
    method = fit(tmp_path, "best", tiny_dataset(n_users=24, n_items=20, seed=9), rounds=2, epochs=2, patience=0,
                 **sources)
    found = method.metadata()
    assert found["selected_phase"] == 0
    assert [entry.get("best_validation") for entry in found["schedule"]] == [0.5, None, 0.4]
    assert [entry.get("best_epoch") for entry in found["schedule"]] == [1, None, 2]
    assert len(seen) == 4
    recommender, generator = seen[0]
    for name, value in method.recommender.state_dict().items():
        assert torch.equal(value, recommender[name]), name
    for name, value in method.generator.model.state_dict().items():
        assert torch.equal(value, generator[name]), name
    # The later phases did train other weights: the check above could fail.
    assert any(not torch.equal(value, recommender[name]) for name, value in seen[3][0].items())
    assert any(not torch.equal(value, generator[name]) for name, value in seen[3][1].items())


def test_a_second_target_reuses_the_trained_foundation(tmp_path: Path, sources, monkeypatch) -> None:
    """The foundation depends on the sources and options only: a run on another target loads
    the finished, selected schedule (no phase runs again) and tests the same weights."""
    first = fit(tmp_path, "toys", tiny_dataset(n_users=24, n_items=20, seed=9), rounds=2, epochs=1, patience=0,
                **sources)
    from methods.idgenrec.method import IDGenRec

    def no_training(*args, **kwargs):
        raise AssertionError("a phase ran again")

    monkeypatch.setattr(IDGenRec, "_recommender_phase", no_training)
    monkeypatch.setattr(IDGenRec, "_generator_phase", no_training)
    second = fit(tmp_path, "yelp", tiny_dataset(n_users=30, n_items=25, seed=4), rounds=2, epochs=1, patience=0,
                 **sources)
    assert first.metadata()["foundation"]["phases_loaded"] == 0
    found = second.metadata()["foundation"]
    assert found["phases_loaded"] == found["phases"] == 3 and found["folder"] == first.metadata()["foundation"]["folder"]
    assert second.metadata()["training_curve"] == first.metadata()["training_curve"]
    for name, value in first.recommender.state_dict().items():
        assert torch.equal(value, second.recommender.state_dict()[name]), name
    # Another option is another foundation: it would train.
    with pytest.raises(AssertionError, match="a phase ran again"):
        fit(tmp_path, "other", tiny_dataset(n_users=24, n_items=20, seed=9), rounds=2, epochs=2, patience=0, **sources)
