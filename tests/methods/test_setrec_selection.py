"""SETRec chooses beta on validation only, and its CF tokenizer never sees a held-out target."""

from __future__ import annotations

import numpy as np
import pytest

from bench.config import EvalConfig
from bench.data.dataset import build_dataset
from bench.data.split import Split, leave_one_out
from bench.evaluation.protocol import evaluate
from bench.method import RunContext
from methods.setrec.cf_tokenizer import cf_item_embeddings, training_only_split
from methods.setrec.method import SETRec, SETRecConfig, select_beta

# Three items. Every user's validation target is item 0, the test target item 1. The CF
# score prefers item 0, the semantic score item 1: a small beta wins validation, a large
# beta would win the test phase.
COLLABORATIVE = np.array([1.0, 0.0, 0.5])
SEMANTIC = np.array([0.0, 1.0, 0.5])


def designed_split(n_users: int = 4) -> Split:
    return Split(train=[np.array([2, 2]) for _ in range(n_users)], valid_items=[np.array([0])] * n_users,
                 test_items=[np.array([1])] * n_users, n_items=3)


def stub_method(tmp_path) -> SETRec:
    method = SETRec(SETRecConfig(), RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False))

    def score_parts(histories):
        rows = len(histories)
        return np.tile(COLLABORATIVE, (rows, 1)), np.tile(SEMANTIC, (rows, 1))

    method.score_parts = score_parts
    return method


def test_beta_is_chosen_on_validation_not_on_test(tmp_path, monkeypatch):
    split = designed_split()
    method = stub_method(tmp_path)
    read_phases = []
    original = Split.target_lists
    monkeypatch.setattr(Split, "target_lists", lambda self, phase: read_phases.append(phase) or original(self, phase))
    values = method.validation_grid(split)
    method.beta = select_beta(values, "NDCG@10")
    assert set(read_phases) == {"valid"}  # the grid never reads a test target
    monkeypatch.setattr(Split, "target_lists", original)

    # What the test phase would have picked, computed here only to show the two disagree.
    test_ndcg = {}
    for beta in values:
        method.beta = beta
        test_ndcg[beta] = evaluate(method, split, "test", EvalConfig(), method.context).means()["NDCG@10"]
    test_choice = max(sorted(test_ndcg), key=lambda beta: (test_ndcg[beta], -beta))
    chosen = select_beta(values, "NDCG@10")
    assert chosen == 0.1 and test_choice >= 0.6
    assert values[0.1]["NDCG@10"] == 1.0 and values[1.0]["NDCG@10"] < 1.0
    assert sorted(values) == list(SETRecConfig().beta_grid)  # every grid value's validation result is kept


def test_select_beta_prefers_the_smaller_beta_on_a_tie_and_names_a_missing_metric():
    from bench.errors import BenchError

    values = {0.3: {"NDCG@10": 0.2}, 0.1: {"NDCG@10": 0.2}, 0.5: {"NDCG@10": 0.1}}
    assert select_beta(values, "NDCG@10") == 0.1
    with pytest.raises(BenchError, match="Recall@20"):
        select_beta(values, "Recall@20")


def test_ablations_leave_beta_nothing_to_weigh():
    assert SETRecConfig(semantic_tokens=False).effective_beta_grid() == (0.0,)
    assert SETRecConfig(cf_token=False).effective_beta_grid() == (1.0,)


def held_out_dataset():
    """Each user's validation and test items occur nowhere in any training part."""
    sequences = []
    for user in range(12):
        chain = [f"i{(user + step) % 8}" for step in range(4)]
        sequences.append((f"u{user}", chain + [f"valid{user}", f"test{user}"]))
    text = {f"i{i}": f"title: thing {i}" for i in range(8)}
    return build_dataset("held-out", sequences, text, {}, {"format": "test"})


def test_training_only_split_is_the_training_part():
    split = leave_one_out(held_out_dataset())
    inner = training_only_split(split)
    for history, inner_history, inner_valid in zip(split.train, inner.train, inner.target_lists("valid")):
        assert np.concatenate([inner_history, inner_valid]).tolist() == history.tolist()


def test_cf_tokenizer_sasrec_never_sees_validation_or_test_targets(tmp_path):
    dataset = held_out_dataset()
    split = leave_one_out(dataset)
    held_out = set(split.valid_target.tolist()) | set(split.test_target.tolist())
    options = {"hidden_size": 8, "n_layers": 1, "n_heads": 2, "inner_size": 16, "epochs": 2, "threads": 1,
               "max_seq_length": 5, "train_batch_size": 16}
    context = RunContext(work_dir=tmp_path / "run", seed=0, profile="cpu", show_progress=False)
    embeddings, facts = cf_item_embeddings(dataset, split, options, context)
    assert embeddings.shape == (dataset.n_items, 8) and embeddings.dtype == np.float32
    assert not facts["reused"]

    written = list((tmp_path / "cache" / "setrec-cf").rglob("bench.inter"))
    assert len(written) == 1
    rows = [line.split("\t") for line in written[0].read_text().splitlines()[1:]]
    seen_items = {int(item) for _, item, _ in rows}
    assert seen_items and not seen_items & held_out
    by_user: dict[int, list[int]] = {}
    for user, item, _ in rows:
        by_user.setdefault(int(user), []).append(int(item))
    assert all(by_user[user] == split.train[user].tolist() for user in by_user)

    again, facts_again = cf_item_embeddings(dataset, split, options, context)
    assert facts_again["reused"] and np.array_equal(again, embeddings)
