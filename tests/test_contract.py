"""Every registered method trains briefly on a tiny fixture and returns valid rankings, and the
ranks a record stores give back the per-user values the evaluator computed (one target per user,
and several with warm and cold ones ranked within their group).

A new plugin is tested the moment it registers. Options that make a run short are set
when the method's config has them (one epoch, tiny sizes); nothing else is special-cased.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.config import EvalConfig, resolve
from bench.data.split import leave_one_out
from bench.evaluation.protocol import evaluate
from bench.method import RunContext, TrainingData
from bench.registry import methods
from tests.conftest import tiny_dataset, with_cold_targets
from tests.evaluation.test_stored_ranks import assert_stored_ranks_reproduce

SHORT_RUN = {
    "epochs": 1, "pretrain_epochs": 1, "rounds": 1, "recommender_epochs": 1, "generator_epochs": 1,
    "hidden_size": 16, "inner_size": 32, "embedding_size": 16, "n_layers": 1, "num_layers": 1, "n_heads": 2,
    "num_heads": 2, "d_model": 32, "d_ff": 64, "d_kv": 16, "vocab_size": 200, "batch_size": 16,
    "train_batch_size": 64, "threads": 1, "beam_width": 12, "stopping_step": 1,
    # IDGenRec's ID generator
    "generator_d_model": 32, "generator_d_ff": 64, "generator_num_layers": 1, "generator_num_heads": 2,
    "generator_warm_start_epochs": 1, "generator_warm_start_min_steps": 0, "id_num_groups": 3,
    "id_max_diversity_penalty": 2, "id_length_range": (1, 4), "id_longer_length_range": (4, 6),
    "user_id_max_items": 3,
}


@pytest.mark.parametrize("name", methods().names())
def test_method_returns_valid_rankings(name, tmp_path):
    method_class = methods().get(name)
    fields = {f.name for f in dataclasses.fields(method_class.config_class)}
    overrides = {key: value for key, value in SHORT_RUN.items() if key in fields}
    resolved = resolve(name, method_class.config_class, method_class.profiles, "cpu", {}, overrides)
    dataset = tiny_dataset(n_users=24, n_items=20)
    split = leave_one_out(dataset)
    context = RunContext(work_dir=tmp_path / name, seed=0, profile="cpu", show_progress=False)
    context.work_dir.mkdir(parents=True)
    method = method_class(resolved.method, context)
    method.fit(TrainingData(dataset=dataset, split=split))
    result = evaluate(method, split, "test", EvalConfig(), context)
    assert set(result.per_user) == {"HR@5", "NDCG@5", "HR@10", "NDCG@10"}
    for values in result.per_user.values():
        assert values.shape == (split.n_users,)
        assert np.all((values >= 0) & (values <= 1))
    assert_stored_ranks_reproduce(result)
    several = evaluate(method, with_cold_targets(split), "test", EvalConfig(), context, in_group=True)
    assert several.warm is not None and several.cold is not None
    assert_stored_ranks_reproduce(several)
    metadata = method.metadata()
    assert isinstance(metadata, dict)
    if "eval_every" in fields:  # trained by the engine's loop: the run's curve is at the metadata's top
        curve = metadata.get("training_curve")
        assert curve and all("validation" in entry and "NDCG@10" in entry["validation"] for entry in curve)
        # How the curve was measured, as every engine method records it (bench.engine.selection).
        selection = metadata.get("selection") or {}
        assert {"metric", "phase", "users", "n_users", "of_users", "mask_history", "eval_every",
                "patience"} <= set(selection), f"{name}: selection fields {sorted(selection)}"
        assert selection["metric"] == "NDCG@10" and 0 < selection["n_users"] <= selection["of_users"]
