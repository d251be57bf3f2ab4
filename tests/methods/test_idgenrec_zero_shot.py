"""IDGenRec zero-shot (Sec. 3.5, Table 7): the foundation trains on other datasets only; the
evaluated dataset's interactions are first read by the evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from bench.config import EvalConfig
from bench.data.split import leave_one_out
from bench.evaluation.protocol import evaluate
from tests.conftest import Guarded, guarded, tiny_dataset
from tests.methods.test_idgenrec_method import fit


def test_zero_shot_fit_reads_no_interaction_of_the_evaluated_dataset(tmp_path) -> None:
    target = tiny_dataset(n_users=24, n_items=20, seed=9)
    split = leave_one_out(target)
    guarded_dataset, guarded_split = guarded(target, split)
    Guarded.armed = True
    try:
        with pytest.raises(AssertionError, match="read before evaluation"):  # the guard works
            len(guarded_dataset.sequences)
        with pytest.raises(AssertionError, match="read before evaluation"):
            guarded_split.test_items[0]
        method = fit(tmp_path, "zero", guarded_dataset, guarded_split, foundation_datasets=("demo",),
                     foundation_users=30, rounds=1)
    finally:
        Guarded.armed = False
    assert method.metadata()["zero_shot"] is True
    result = evaluate(method, split, "test", EvalConfig(), method.context)
    assert np.all((result.per_user["NDCG@10"] >= 0) & (result.per_user["NDCG@10"] <= 1))
