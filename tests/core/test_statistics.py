import numpy as np
import pytest
from scipy import stats

from bench.errors import BenchError
from bench.statistics import (bootstrap_interval, check_seed_group, compare_groups, compare_runs, holm, paired_tests,
                              seed_group_key, seed_groups)


def _record(run_id, method, values, digest="d1", dataset="toys", mask=False):
    return {"run_id": run_id, "method": method, "dataset": dataset, "split": {"digest": digest},
            "config": {"eval": {"mask_history": mask}}, "per_user": {"HR@10": values}}


def test_paired_tests_match_scipy():
    rng = np.random.default_rng(1)
    a = rng.random(300)
    b = a - 0.05 + rng.normal(0, 0.1, 300)
    t_p, w_p = paired_tests(a, b)
    assert t_p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert w_p == pytest.approx(stats.wilcoxon(a, b).pvalue)


def test_identical_runs_are_not_significant():
    a = np.array([0.0, 1.0, 0.0, 1.0])
    assert paired_tests(a, a) == (1.0, 1.0)


def test_holm_against_hand_computation():
    # p sorted: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_bootstrap_interval_contains_mean():
    values = np.random.default_rng(0).integers(0, 2, 500).astype(float)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high
    assert high - low < 0.2


def test_compare_refuses_different_users():
    a = _record("a", "x", [1.0, 0.0])
    b = _record("b", "y", [0.0, 0.0], digest="other")
    with pytest.raises(BenchError, match="same users"):
        compare_runs(a, [b], ["HR@10"])


def test_compare_report_holm_and_outputs():
    rng = np.random.default_rng(2)
    strong = (rng.random(400) < 0.5).astype(float)
    weak = (rng.random(400) < 0.2).astype(float)
    same = strong.copy()
    report = compare_runs(_record("c", "cand", strong), [_record("w", "weak", weak), _record("s", "same", same)],
                          ["HR@10"])
    frame = report.to_frame()
    assert list(frame["significant"]) == [True, False]
    raw = frame["t_test_p"].tolist()
    assert frame["t_test_p_holm"].tolist() == pytest.approx(holm(raw))
    assert "weak" in report.to_markdown() and "\\toprule" in report.to_latex()
    assert "Candidate: cand" in report.to_markdown() and "* higher" in report.to_markdown()
    reverse = compare_runs(_record("w", "weak", weak), [_record("c", "cand", strong)], ["HR@10"])
    assert "* lower" in reverse.to_markdown() and "* higher" not in reverse.to_markdown()


def _seed_record(run_id, method, values, seed, started="2026-01-01T00:00:00", config=None):
    record = _record(run_id, method, values)
    record.update(seed=seed, started_at=started, config={"eval": {"mask_history": False}, "method": config or {}})
    return record


def test_seed_groups_keep_one_record_per_seed_and_split_configurations():
    old = _seed_record("old", "sasrec", [0.0, 1.0], seed=1, started="2026-01-01T00:00:00")
    new = _seed_record("new", "sasrec", [1.0, 1.0], seed=1, started="2026-01-02T00:00:00")
    other_seed = _seed_record("s2", "sasrec", [0.0, 0.0], seed=2)
    other_config = _seed_record("c", "sasrec", [0.0, 0.0], seed=1, config={"loss_type": "BPR"})
    groups = seed_groups([old, other_config, new, other_seed])
    assert [[r["run_id"] for r in group] for group in groups] == [["new", "s2"], ["c"]]


def test_seeds_made_before_an_added_option_or_on_other_threads_are_one_seed_group():
    from bench.identity import added_later_defaults

    later = added_later_defaults("tiger")
    assert "letter_cf_weight" in later  # an option TIGER records made before it existed lack
    before = _seed_record("before", "tiger", [1.0, 0.0], seed=1, config={"epochs": 3, "threads": 1})
    after = _seed_record("after", "tiger", [0.0, 1.0], seed=2, config={"epochs": 3, "threads": 2, **later})
    assert seed_group_key(before) == seed_group_key(after)
    check_seed_group([before, after])
    changed = {**later, "letter_cf_weight": later["letter_cf_weight"] + 1.0}
    other = _seed_record("other", "tiger", [0.0, 1.0], seed=2, config={"epochs": 3, **changed})
    assert seed_group_key(other) != seed_group_key(before)


def test_seed_group_comparison_tests_seed_averaged_users():
    rng = np.random.default_rng(3)
    candidate = [_seed_record(f"a{seed}", "cand", (rng.random(200) < 0.4).astype(float), seed) for seed in (1, 2, 3)]
    baseline = [_seed_record(f"b{seed}", "base", (rng.random(200) < 0.3).astype(float), seed) for seed in (1, 2)]
    row = compare_groups(candidate, [baseline], ["HR@10"]).to_frame().iloc[0]
    a = np.mean([r["per_user"]["HR@10"] for r in candidate], axis=0)
    b = np.mean([r["per_user"]["HR@10"] for r in baseline], axis=0)
    assert row["t_test_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["candidate_mean"] == pytest.approx(a.mean())
    assert row["candidate_seed_std"] == pytest.approx(np.std([r["per_user"]["HR@10"].mean() for r in candidate], ddof=1))
    assert (row["candidate_seeds"], row["baseline_seeds"]) == (3, 2)
    assert "base (seeds 1, 2)" in compare_groups(candidate, [baseline], ["HR@10"]).to_markdown()
    assert " ± " in compare_groups(candidate, [baseline], ["HR@10"]).to_markdown()


def test_a_seed_group_must_be_one_configuration_with_distinct_seeds():
    a = _seed_record("a", "x", [1.0, 0.0], seed=1)
    b = _seed_record("b", "x", [1.0, 0.0], seed=2, config={"epochs": 3})
    with pytest.raises(BenchError, match="differ in more than their seed"):
        check_seed_group([a, b])
    with pytest.raises(BenchError, match="a seed appears twice"):
        check_seed_group([a, _seed_record("c", "x", [0.0, 0.0], seed=1)])


@pytest.mark.parametrize("values", [
    (np.random.default_rng(4).random(3000) < 0.07).astype(float),  # HR-like: two distinct values
    np.random.default_rng(5).random(800),  # every value distinct
])
def test_bootstrap_interval_matches_scipy_resampling(values):
    low, high = bootstrap_interval(values, resamples=4000)
    reference = stats.bootstrap((values,), np.mean, n_resamples=4000, confidence_level=0.95, method="percentile",
                                random_state=np.random.default_rng(9)).confidence_interval
    width = reference.high - reference.low
    assert low == pytest.approx(reference.low, abs=0.05 * width)
    assert high == pytest.approx(reference.high, abs=0.05 * width)


def test_compare_one_group_of_targets_over_the_users_who_have_one():
    """`bench compare --targets cold-in-group`: the cold users' within-group values are tested,
    a record without them is refused naming the fix, runs on other cold users are refused."""
    rng = np.random.default_rng(3)
    strong, weak = (rng.random(300) < 0.6).astype(float), (rng.random(300) < 0.1).astype(float)
    a, b = _record("a", "setrec", [0.0] * 5), _record("b", "idgenrec", [1.0] * 5)  # all targets: b ahead
    for record, values in ((a, strong), (b, weak)):
        record.update(users_cold=np.arange(300), per_user_cold_in_group={"HR@10": values})
    report = compare_runs(a, [b], ["HR@10"], "cold_in_group")
    row = report.to_frame().iloc[0]
    assert row["candidate_mean"] == pytest.approx(strong.mean()) and row["significant"]
    assert row["targets"] == "cold-in-group" and report.to_markdown().startswith("Targets: cold-in-group")
    old = _record("o", "idgenrec", [1.0] * 5)
    old["users_cold"] = np.arange(300)
    with pytest.raises(BenchError, match="cold targets ranked among cold items .* run its command again"):
        compare_runs(a, [old], ["HR@10"], "cold_in_group")
    b["users_cold"] = np.arange(1, 301)
    with pytest.raises(BenchError, match="differ in users_cold"):
        compare_runs(a, [b], ["HR@10"], "cold_in_group")
