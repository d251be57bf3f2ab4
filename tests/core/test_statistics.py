import numpy as np
import pytest
from scipy import stats

from bench.errors import BenchError
from bench.statistics import bootstrap_interval, compare_runs, holm, paired_tests


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
