"""The unisrec plugin: the MoE adaptor and the contrastive losses against hand computations,
the pre-training views, the sources sampled as IDGenRec's foundation, and the zero-shot
path, which must not read the evaluated dataset's interactions before evaluation."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional

from bench.config import EvalConfig, resolve
from bench.data.dataset import Dataset
from bench.data.split import leave_one_out
from bench.errors import BenchError
from bench.evaluation.protocol import evaluate
from bench.method import RunContext, TrainingData
from methods.unisrec.model import MoEAdaptor, NetworkOptions, UniSRecModel, pad_histories
from methods.unisrec.tasks import Augmentation, SequenceTask
from tests.conftest import Guarded, guarded, tiny_dataset

TEXT_DIM = 16
TINY = dict(hidden_size=16, inner_size=32, n_layers=1, n_heads=2, n_experts=3, max_seq_length=6, threads=1,
            epochs=2, batch_size=32, pretrain_epochs=2, pretrain_batch_size=64, device="cpu")


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def hashed_text_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic stand-in for the sentence encoder (the engine's layer has its own
    tests): the sum of one fixed random vector per word."""
    def embed(texts, profile, encoder, cache_dir, context, **_):
        rows = []
        for text in texts:
            row = np.zeros(TEXT_DIM, dtype=np.float32)
            for word in text.split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                row += np.random.default_rng(seed).normal(size=TEXT_DIM).astype(np.float32)
            rows.append(row)
        return np.stack(rows)

    monkeypatch.setattr("bench.engine.text_embeddings.item_text_embeddings", embed)


def options(**changes) -> NetworkOptions:
    base = dict(text_dim=TEXT_DIM, hidden_size=8, inner_size=16, n_layers=1, n_heads=2, hidden_dropout_prob=0.0,
                attn_dropout_prob=0.0, n_experts=3, adaptor_dropout_prob=0.0, max_seq_length=5, temperature=0.07,
                seq_seq_weight=0.3)
    return NetworkOptions(**{**base, **changes})


# ---------------------------------------------------------------- the network


def test_moe_adaptor_is_the_gated_sum_of_whitened_experts() -> None:
    torch.manual_seed(0)
    adaptor = MoEAdaptor(input_size=6, output_size=4, n_experts=3, dropout=0.2).eval()
    with torch.no_grad():
        adaptor.whitening_bias.normal_()
        adaptor.gate_weight.normal_()
    text = torch.randn(5, 6)
    gates = torch.softmax(text @ adaptor.gate_weight, dim=-1)
    weights = adaptor.whitening_weight.view(6, 3, 4)
    expected = sum(gates[:, k:k + 1] * ((text - adaptor.whitening_bias[k]) @ weights[:, k]) for k in range(3))
    assert torch.allclose(adaptor(text), expected, atol=1e-5)
    # Training adds gate noise (and dropout): the output changes.
    assert not torch.allclose(adaptor.train()(text), expected, atol=1e-5)


def test_pretraining_loss_is_seq_item_plus_lambda_seq_seq_without_same_target_negatives() -> None:
    torch.manual_seed(1)
    model = UniSRecModel(options()).eval()
    rng = np.random.default_rng(0)
    model.use_catalogue(rng.normal(size=(7, TEXT_DIM)).astype(np.float32),
                        rng.normal(size=(7, TEXT_DIM)).astype(np.float32))
    histories = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5]), np.array([1, 6, 2, 3])]
    targets = torch.tensor([3, 4, 3, 0])  # users 0 and 2 share their next item
    views = [np.array([0, 2]), np.array([3]), np.array([4, 5]), np.array([1, 6, 2, 3])]
    word_drop = [np.array([False, False]), np.array([True]), np.array([False, True]), np.zeros(4, dtype=bool)]
    task = SequenceTask([], 5, 0, Augmentation(0.2, 0.9))
    batch = task.collate([(h, int(t), (v, w)) for h, t, v, w in zip(histories, targets.tolist(), views, word_drop)])
    with torch.no_grad():
        loss = model(**batch)
        plain = model.adaptor(model.item_text)
        table = torch.cat([plain, model.adaptor(model.item_text_dropped)])  # word-dropped rows after the plain

        def sequence(items, drop):
            padded, length = pad_histories([items], 5)
            rows = padded + len(plain) * np.pad(drop, (0, padded.shape[1] - len(drop)))
            return model.encode(torch.as_tensor(rows), table, torch.as_tensor(length))[0]

        s = torch.stack([sequence(h, np.zeros(len(h), dtype=bool)) for h in histories])
        s_view = torch.stack([sequence(v, w) for v, w in zip(views, word_drop)])
        v = functional.normalize(plain[targets + 1], dim=-1)

    def in_batch(anchor, positives):
        total = 0.0
        for j in range(4):
            kept = [k for k in range(4) if k == j or targets[k] != targets[j]]
            logits = torch.stack([anchor[j] @ positives[k] / 0.07 for k in kept])
            total += -(logits[kept.index(j)] - torch.logsumexp(logits, 0))
        return total / 4

    assert loss.item() == pytest.approx((in_batch(s, v) + 0.3 * in_batch(s, s_view)).item(), rel=1e-5)


def test_fine_tuning_loss_is_softmax_over_every_catalogue_item() -> None:
    torch.manual_seed(2)
    model = UniSRecModel(options()).eval()
    model.use_catalogue(np.random.default_rng(1).normal(size=(6, TEXT_DIM)).astype(np.float32))
    task = SequenceTask([], 5, 0)
    batch = task.collate([(np.array([0, 1]), 2, None), (np.array([5]), 4, None)])
    with torch.no_grad():
        loss = model(**batch)
        adapted = model.adapted_catalogue()
        scores = model.scores(batch["history"], batch["length"], adapted)
    assert scores.shape == (2, 6)
    assert loss.item() == pytest.approx(functional.cross_entropy(scores / 0.07, batch["target"]).item(), rel=1e-5)


def test_views_are_drawn_per_epoch_from_the_seed_alone() -> None:
    sequences = [np.arange(start, start + 8) for start in range(0, 60, 3)]
    task = SequenceTask(sequences, 6, seed=3, augmentation=Augmentation(item_drop_ratio=0.3,
                                                                        item_drop_probability=0.5))
    first, again, later = task.examples_for_epoch(0), task.examples_for_epoch(0), task.examples_for_epoch(1)
    assert len(first) == len(task) == 20 * 7
    same = [np.array_equal(a[2][0], b[2][0]) and np.array_equal(a[2][1], b[2][1]) for a, b in zip(first, again)]
    assert all(same)
    assert not all(np.array_equal(a[2][1], b[2][1]) and len(a[2][0]) == len(b[2][0]) for a, b in zip(first, later))
    item_drops = 0
    for history, target, (view, word_drop) in first:
        assert target == history[-1] + 1 and len(history) <= 6
        if word_drop.any() or len(view) == len(history) and np.array_equal(view, history):
            assert np.array_equal(view, history) and not word_drop[0]  # word drop: same items
        if len(view) < len(history):
            item_drops += 1
            assert view[0] == history[0] and set(view) <= set(history) and not word_drop.any()
    assert 0.2 < item_drops / len(first) < 0.6


# ----------------------------------------------------------- sources, zero-shot


def write_source(folder: Path, seed: int, n_users: int = 30, n_items: int = 24) -> Path:
    """A tiny dataset in the IDGenRec/OpenP5 folder format (the shared data's format)."""
    dataset = tiny_dataset(n_users=n_users, n_items=n_items, seed=seed)
    folder.mkdir(parents=True)
    (folder / "user_sequence.txt").write_text("".join(
        f"{user} {' '.join(dataset.item_ids[i] for i in sequence)}\n"
        for user, sequence in zip(dataset.user_ids, dataset.sequences)))
    (folder / "item_generative_indexing_phase_0.txt").write_text("".join(
        f"{item} {text.split(';')[0].removeprefix('title: ')}\n" for item, text in zip(dataset.item_ids, dataset.item_text)))
    return folder


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, str]:
    return {"foundation_datasets": ("beauty", "sports"), "foundation_users": 20,
            "foundation_data_dirs": (str(write_source(tmp_path / "beauty", 1)), str(write_source(tmp_path / "sports", 2)))}


def config(**changes):
    return resolve("unisrec", __import__("methods.unisrec.method", fromlist=["UniSRecConfig"]).UniSRecConfig,
                   {}, "cpu", {}, {**TINY, **changes}).method


def fitted(work_dir: Path, dataset: Dataset, split=None, **changes):
    from methods.unisrec.method import UniSRec

    context = RunContext(work_dir=work_dir, seed=0, profile="cpu", show_progress=False)
    work_dir.mkdir(parents=True, exist_ok=True)
    method = UniSRec(config(**changes), context)
    method.fit(TrainingData(dataset=dataset, split=split if split is not None else leave_one_out(dataset)))
    return method


def test_zero_shot_fit_reads_no_interaction_of_the_evaluated_dataset(tmp_path: Path, sources) -> None:
    target = tiny_dataset(n_users=24, n_items=20, seed=9)
    split = leave_one_out(target)
    guarded_dataset, guarded_split = guarded(target, split)
    Guarded.armed = True
    try:
        method = fitted(tmp_path / "zero-shot", guarded_dataset, guarded_split, mode="zero-shot", **sources)
    finally:
        Guarded.armed = False
    found = method.metadata()
    assert found["zero_shot"] is True and set(found["trained_on"]) == {"beauty", "sports"}
    assert found["pretraining"]["reused"] is False and "fine_tuning" not in found
    context = RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False)
    result = evaluate(method, split, "test", EvalConfig(), context)
    assert np.all((result.per_user["NDCG@10"] >= 0) & (result.per_user["NDCG@10"] <= 1))


def test_pretraining_is_shared_by_runs_on_other_targets_and_fine_tuning_keeps_the_encoder(tmp_path: Path,
                                                                                          sources) -> None:
    first = fitted(tmp_path / "a", tiny_dataset(n_users=24, n_items=20, seed=9), mode="zero-shot", **sources)
    tuned = fitted(tmp_path / "b", tiny_dataset(n_users=30, n_items=22, seed=11), mode="inductive", **sources)
    found = tuned.metadata()
    assert found["pretraining"]["reused"] is True
    assert found["pretraining"]["folder"] == first.metadata()["pretraining"]["folder"]
    assert set(found["trained_on"]) == {"beauty", "sports", "tiny"} and found["zero_shot"] is False
    assert found["frozen_parameters"] > 0 and found["trainable_parameters"] < found["parameters"]
    pretrained, adapted = first.model.state_dict(), tuned.model.state_dict()
    for name, value in adapted.items():
        if name.startswith(("trm_encoder.", "position_embedding.")):
            assert torch.equal(value, pretrained[name]), name
    assert not torch.equal(adapted["adaptor.whitening_weight"], pretrained["adaptor.whitening_weight"])


def test_bad_zero_shot_setups_are_refused(tmp_path: Path, sources) -> None:
    with pytest.raises(BenchError, match="foundation_datasets"):
        config(mode="zero-shot")
    with pytest.raises(BenchError, match="'mode'"):
        config(mode="transductive")
    own = dataclasses.replace(tiny_dataset(n_users=24, n_items=20), name="sports")
    with pytest.raises(BenchError, match="lists 'sports', the dataset being evaluated"):
        fitted(tmp_path / "own", own, mode="zero-shot", **sources)


def test_zero_shot_table_shows_unisrec_on_yelp_beside_the_paper(tmp_path: Path) -> None:
    from bench.results import write_record
    from bench.tables import render_table
    from tests.test_report import fixture_record

    record = {**fixture_record("unisrec", 42, 0.3, 1, {"mode": "zero-shot"}, {"zero_shot": True,
                                                                       "trained_on": {"beauty": {}, "sports": {}}}),
              "dataset": "yelp"}
    write_record(tmp_path, record)
    table = render_table("zero-shot", tmp_path, with_paper=True)
    yelp_hr10 = next(line for line in table.splitlines() if "Yelp" in line and "HR@10" in line)
    assert f"{record['metrics']['HR@10']:.4f}" in yelp_hr10 and "0.0081" in yelp_hr10  # IDGenRec Table 7, UniSRec
