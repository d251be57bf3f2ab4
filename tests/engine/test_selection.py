"""Model selection on validation: the best epoch's weights are the ones returned, patience
stops training, a killed run resumes to the same curve and stop, and no test target is read
before the final evaluation."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import EvalConfig
from bench.data.split import leave_one_out
from bench.engine.batching import SequentialExamples
from bench.engine.model import T5EngineConfig, build_model
from bench.engine.prompts import TEMPLATES_WITHOUT_USER
from bench.engine.selection import Selection, sample_validation_users
from bench.engine.tokenizer import train_cpu_tokenizer
from bench.engine.checkpoints import BEST_PREFIX
from bench.engine.training import train_seq2seq
from bench.evaluation.protocol import evaluate
from bench.method import RunContext, TrainingData
from bench.registry import methods
from tests.conftest import tiny_dataset

CONFIG = T5EngineConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=100, epochs=6,
                        batch_size=2, learning_rate=5e-3, patience=2)
SEQUENCES = [np.array([0, 1, 2, 3]), np.array([4, 5]), np.array([2, 3, 4, 5, 6])]
IDS = [f"item {i}" for i in range(7)]
# NDCG@10 per validated epoch: best at epoch 2, then two rankings without improvement.
SCRIPT = [0.1, 0.3, 0.3, 0.2, 0.9, 0.9]


@pytest.fixture
def tokenizer(tmp_path: Path):
    corpus = IDS + [t.replace("{history}", " ") for t in TEMPLATES_WITHOUT_USER]
    return train_cpu_tokenizer(corpus, tmp_path / "tokenizer", vocab_size=100, seed=0)


def context(tmp_path: Path) -> RunContext:
    return RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)


class ScriptedValidation:
    """Returns the scripted NDCG@10 per call and keeps a copy of the weights it was shown."""

    def __init__(self) -> None:
        self.calls = 0
        self.weights: list[dict[str, torch.Tensor]] = []

    def install(self, model) -> None:
        self.model = model

    def __call__(self) -> dict[str, float]:
        assert not self.model.training and not torch.is_grad_enabled()
        self.weights.append({name: value.clone() for name, value in self.model.state_dict().items()})
        self.calls += 1
        return {"NDCG@10": SCRIPT[self.calls - 1], "HR@10": 0.5}

    def describe(self) -> dict[str, object]:
        return {"metric": "NDCG@10", "phase": "valid", "users": "all", "n_users": 3, "of_users": 3}


def test_best_epoch_is_returned_and_patience_stops(tokenizer, tmp_path: Path, caplog) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    model = build_model(CONFIG, "cpu", tokenizer, seed=0)
    validate = ScriptedValidation()
    with caplog.at_level(logging.INFO, logger="bench.engine.training"):
        report = train_seq2seq(model, tokenizer, examples, CONFIG, tmp_path / "checkpoints", context(tmp_path),
                               validate=validate)
    # The run log says each epoch's loss and validation, and why training stopped.
    said = [record.getMessage() for record in caplog.records if record.name == "bench.engine.training"]
    assert len(said) == 4 and "validation NDCG@10 " in said[0] and said[1].endswith("best so far")
    assert said[2].endswith("best epoch 2") and said[3].endswith("best epoch 2; stopped by patience")
    # Epoch 3 ties epoch 2 (no improvement), epoch 4 is worse: patience 2 stops after epoch 4.
    assert validate.calls == 4 and report.epochs == 4 and report.stopped_by == "patience"
    assert report.best_epoch == 2
    assert [entry["epoch"] for entry in report.training_curve] == [1, 2, 3, 4]
    assert [entry["validation"]["NDCG@10"] for entry in report.training_curve] == SCRIPT[:4]
    assert all(entry["train_loss"] > 0 and entry["train_seconds"] >= 0 for entry in report.training_curve)
    cpu = [entry["cpu_seconds"] for entry in report.training_curve]  # CPU time to each validation, cumulative
    assert cpu[0] > 0 and cpu == sorted(cpu) and report.cpu_seconds >= cpu[-1]
    for name, value in model.state_dict().items():
        assert torch.equal(value, validate.weights[1][name]), name
    assert not torch.equal(model.state_dict()["shared.weight"], validate.weights[3]["shared.weight"])
    # The last epoch's checkpoint (for resuming) and the best weights, nothing else.
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == [f"{BEST_PREFIX}0002", "epoch-0004"]


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_curve_stop_and_weights(tokenizer, tmp_path: Path) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    straight = build_model(CONFIG, "cpu", tokenizer, seed=0)
    straight_report = train_seq2seq(straight, tokenizer, examples, CONFIG, tmp_path / "straight",
                                    context(tmp_path), validate=ScriptedValidation())

    def killed_in_fourth_epoch(epoch: int):
        if epoch == 3:
            raise Killed
        return examples(epoch)

    validate = ScriptedValidation()
    with pytest.raises(Killed):
        train_seq2seq(build_model(CONFIG, "cpu", tokenizer, seed=0), tokenizer, killed_in_fourth_epoch, CONFIG,
                      tmp_path / "killed", context(tmp_path), validate=validate)
    assert validate.calls == 3
    torch.manual_seed(123)
    resumed = build_model(CONFIG, "cpu", tokenizer, seed=9)
    validate.calls = 3  # the scripted validation goes on where the killed process stopped
    report = train_seq2seq(resumed, tokenizer, examples, CONFIG, tmp_path / "killed", context(tmp_path),
                           validate=validate)
    assert report.resumed_from_epoch == 3
    same = [(e["epoch"], e["train_loss"], e["validation"]) for e in straight_report.training_curve]
    assert [(e["epoch"], e["train_loss"], e["validation"]) for e in report.training_curve] == same
    assert (report.best_epoch, report.stopped_by, report.epochs) == (2, "patience", 4)
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_finished_run_with_selection_is_not_trained_or_validated_again(tokenizer, tmp_path: Path) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    model = build_model(CONFIG, "cpu", tokenizer, seed=0)
    train_seq2seq(model, tokenizer, examples, CONFIG, tmp_path / "checkpoints", context(tmp_path),
                  validate=ScriptedValidation())

    class Never(ScriptedValidation):
        def __call__(self):
            raise AssertionError("validated again")

    never = Never()

    again = build_model(CONFIG, "cpu", tokenizer, seed=1)
    report = train_seq2seq(again, tokenizer, examples, CONFIG, tmp_path / "checkpoints", context(tmp_path),
                           validate=never)
    assert report.best_epoch == 2 and len(report.training_curve) == 4
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_eval_every_and_the_last_epoch_are_validated(tokenizer, tmp_path: Path) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    config = dataclasses.replace(CONFIG, epochs=5, eval_every=2, patience=0)
    validate = ScriptedValidation()
    report = train_seq2seq(build_model(config, "cpu", tokenizer, seed=0), tokenizer, examples, config,
                           tmp_path / "checkpoints", context(tmp_path), validate=validate)
    assert [entry["epoch"] for entry in report.training_curve] == [2, 4, 5]
    assert report.best_epoch == 4 and report.stopped_by == "epochs"  # scripted 0.1, 0.3, 0.3


def test_a_target_stops_training_at_the_first_validation_that_reaches_it(tokenizer, tmp_path: Path) -> None:
    """``target_validation`` (the time-to-quality benchmark's stop): epoch 2 scores 0.3 >= 0.25,
    so epoch 3 is never trained; 0 (the default) stops nothing."""
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    config = dataclasses.replace(CONFIG, patience=0, target_validation=0.25)
    validate = ScriptedValidation()
    report = train_seq2seq(build_model(config, "cpu", tokenizer, seed=0), tokenizer, examples, config,
                           tmp_path / "checkpoints", context(tmp_path), validate=validate)
    assert (validate.calls, report.epochs, report.stopped_by, report.best_epoch) == (2, 2, "target", 2)
    selection = Selection(patience=0)
    for epoch, value in enumerate(SCRIPT, start=1):
        selection.update({"epoch": epoch, "validation": {"NDCG@10": value}})
    assert selection.stopped_by is None and Selection.from_state({"patience": 1}).target == 0.0


def test_selection_state_round_trips_and_ties_keep_the_earlier_epoch() -> None:
    selection = Selection(patience=3)
    for epoch, value in enumerate([0.2, 0.2, 0.1], start=1):
        selection.update({"epoch": epoch, "validation": {"NDCG@10": value}})
    assert (selection.best_epoch, selection.evaluations_since_best, selection.stopped_by) == (1, 2, None)
    assert Selection.from_state(selection.state_dict()) == selection


def test_validation_users_are_a_seeded_sorted_sample_of_those_with_a_target() -> None:
    candidates = np.arange(0, 200, 2)
    sample = sample_validation_users(candidates, 30, seed=5)
    assert len(sample) == 30 and np.all(np.diff(sample) > 0) and np.isin(sample, candidates).all()
    assert np.array_equal(sample, sample_validation_users(candidates, 30, seed=5))
    assert not np.array_equal(sample, sample_validation_users(candidates, 30, seed=6))
    assert np.array_equal(sample_validation_users(candidates, 0, seed=5), candidates)
    assert np.array_equal(sample_validation_users(candidates, 500, seed=5), candidates)


class GuardedTargets(list):
    """A user-by-user target list that raises on any read until released."""

    released = False

    def _guard(self):
        if not GuardedTargets.released:
            raise AssertionError("a test target was read before the final evaluation")

    def __getitem__(self, index):
        self._guard()
        return super().__getitem__(index)

    def __iter__(self):
        self._guard()
        return super().__iter__()

    def __len__(self):
        self._guard()
        return super().__len__()


@pytest.mark.parametrize("name", ["p5-sid", "idgenrec"])
def test_no_test_target_is_read_before_the_final_evaluation(name: str, tmp_path: Path) -> None:
    from bench.config import resolve

    method_class = methods().get(name)
    sets = {"epochs": 2, "d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16,
            "vocab_size": 200, "batch_size": 16, "beam_width": 12, "validation_users": 10, "threads": 1}
    if name == "idgenrec":
        sets.update({"rounds": 2, "generator_d_model": 32, "generator_d_ff": 64, "generator_num_layers": 1,
                     "generator_num_heads": 2, "generator_warm_start_epochs": 1,
                     "generator_warm_start_min_steps": 0, "id_num_groups": 3, "id_max_diversity_penalty": 2,
                     "id_length_range": (1, 4), "id_longer_length_range": (4, 6), "user_id_max_items": 3,
                     "generator_phase_examples": 16})
    resolved = resolve(name, method_class.config_class, method_class.profiles, "cpu", {}, sets)
    split = leave_one_out(tiny_dataset(n_users=24, n_items=20))
    guarded = dataclasses.replace(split, test_items=GuardedTargets(split.test_items))
    GuardedTargets.released = False
    run = RunContext(work_dir=tmp_path / name, seed=0, profile="cpu", show_progress=False)
    run.work_dir.mkdir(parents=True)
    method = method_class(resolved.method, run)
    method.fit(TrainingData(dataset=tiny_dataset(n_users=24, n_items=20), split=guarded))
    curve = method.metadata()["training_curve"]
    assert curve and all(len(entry["validation"]) == 4 for entry in curve)
    assert method.metadata()["selection"]["n_users"] == 10
    GuardedTargets.released = True
    assert evaluate(method, guarded, "test", EvalConfig(), run).per_user["HR@10"].shape == (24,)
