"""Weighted ROC AUC against scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sparkhep.evaluate.roc import weighted_roc_auc, weighted_roc_curve


def test_hand_computed_auc():
    # signal scores 0.9 (w 1), 0.4 (w 3); background 0.5 (w 2), 0.1 (w 2)
    # pairs (s > b) weighted: 0.9 beats both (1·4) + 0.4 beats 0.1 (3·2) = 10 of 4·4 = 16
    scores = np.array([0.9, 0.4, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    weights = np.array([1.0, 3.0, 2.0, 2.0])
    assert weighted_roc_auc(scores, labels, weights) == pytest.approx(10 / 16)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_sklearn_with_sample_weight_and_ties(seed):
    rng = np.random.default_rng(seed)
    n = 5000
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes many ties
    weights = rng.exponential(1.0, n)
    expected = roc_auc_score(labels, scores, sample_weight=weights)
    assert weighted_roc_auc(scores, labels, weights) == pytest.approx(expected, abs=1e-12)


def test_curve_starts_at_zero_and_ends_at_one():
    eff_b, eff_s, thresholds = weighted_roc_curve(
        np.array([0.2, 0.8, 0.8]), np.array([0, 1, 0]), np.ones(3)
    )
    assert eff_b.tolist() == [0.0, 0.5, 1.0]
    assert eff_s.tolist() == [0.0, 1.0, 1.0]
    assert thresholds.tolist() == [np.inf, 0.8, 0.2]


def test_one_class_only_is_an_error():
    with pytest.raises(ValueError, match="both classes"):
        weighted_roc_auc(np.array([0.1, 0.2]), np.array([1, 1]), np.ones(2))
