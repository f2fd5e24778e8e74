"""Physics metrics against scikit-learn and scipy, and their uncertainties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score, roc_curve
from sparkhep.evaluate.metrics import (
    METRIC_NAMES,
    kish_n_eff,
    overtraining_metrics,
    physics_metrics,
    weighted_ks,
)


def _sample(seed: int, n: int = 20000):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-rng.normal(labels * 2.5 - 1.0, 1.0)))
    weights = rng.exponential(1.0, n)
    return scores, labels, weights


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_auc_and_efficiencies_equal_sklearn(seed):
    scores, labels, weights = _sample(seed)
    metrics = physics_metrics(scores, labels, weights, n_bootstrap=20)
    assert metrics["test_auc"].value == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12
    )
    fpr, tpr, _ = roc_curve(labels, scores, sample_weight=weights)
    for key, eff_b in (("1e-3", 1e-3), ("1e-2", 1e-2), ("1e-1", 1e-1)):
        expected = np.interp(eff_b, fpr, tpr)
        assert metrics[f"eff_s_at_eff_b_{key}"].value == pytest.approx(expected, abs=1e-9)
    for key, eff_s in (("0.5", 0.5), ("0.8", 0.8)):
        expected = 1 / np.interp(eff_s, tpr, fpr)
        assert metrics[f"rej_b_at_eff_s_{key}"].value == pytest.approx(expected, rel=1e-9)


def test_uncertainties_and_effective_n_are_sensible():
    scores, labels, weights = _sample(3)
    metrics = physics_metrics(scores, labels, weights, n_bootstrap=50)
    auc = metrics["test_auc"]
    assert 0 < auc.error < 0.01
    assert auc.n_eff == pytest.approx(kish_n_eff(weights))
    tight, loose = metrics["eff_s_at_eff_b_1e-3"], metrics["eff_s_at_eff_b_1e-1"]
    # 1e-3 of ~10k background events: a handful of weighted events behind the figure
    assert tight.n_eff < 30 < loose.n_eff
    assert tight.error > loose.error > 0


def test_kish_effective_n():
    assert kish_n_eff(np.ones(10)) == pytest.approx(10)
    assert kish_n_eff(np.array([1.0, 0.0, 0.0])) == pytest.approx(1)
    assert kish_n_eff(np.array([2.0, 1.0])) == pytest.approx(9 / 5)


@pytest.mark.parametrize(("n_a", "n_b"), [(300, 500), (12000, 15000)])
def test_ks_with_unit_weights_equals_scipy(n_a, n_b):
    rng = np.random.default_rng(n_a)
    a = np.round(rng.normal(0, 1, n_a), 2)  # ties across the samples
    b = np.round(rng.normal(0.05, 1, n_b), 2)
    statistic, p_value = weighted_ks(a, b)
    expected = ks_2samp(a, b, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)
    if max(n_a, n_b) > 10000:  # scipy's default (auto) is asymptotic here
        assert p_value == pytest.approx(ks_2samp(a, b).pvalue, rel=1e-9)


def test_weighted_ks_equals_ks_of_repeated_events():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 400), rng.normal(0, 1, 300)
    counts = rng.integers(1, 4, 400)
    statistic, _ = weighted_ks(a, b, weights_a=counts.astype(float))
    assert statistic == pytest.approx(ks_2samp(np.repeat(a, counts), b).statistic, abs=1e-12)


def test_overtraining_metrics_per_class():
    train, test = _sample(7), _sample(8)
    metrics = overtraining_metrics(train, test)
    assert set(metrics) == {"ks_p_signal", "ks_p_background"}
    assert all(0.0 <= m.value <= 1.0 for m in metrics.values())
    # same distributions: no overtraining signal
    assert metrics["ks_p_signal"].value > 1e-3 and metrics["ks_p_background"].value > 1e-3
    assert set(METRIC_NAMES) == {
        "test_auc", "eff_s_at_eff_b_1e-3", "eff_s_at_eff_b_1e-2", "eff_s_at_eff_b_1e-1",
        "rej_b_at_eff_s_0.5", "rej_b_at_eff_s_0.8", "ks_p_signal", "ks_p_background",
    }  # fmt: skip
