"""Weighted ROC curve and area, in numpy.

Every event counts with its physics weight; equal scores form one step of the curve (so ties
are handled as ``sklearn.metrics.roc_auc_score`` does, by trapezoids).
"""

from __future__ import annotations

import numpy as np


def weighted_roc_curve(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background and signal efficiency at every distinct score threshold.

    Args:
        scores: classifier output, larger = more signal-like.
        labels: 1 for signal, 0 for background.
        weights: event weights.

    Returns:
        (ε_B, ε_S, thresholds), starting at (0, 0) and ending at (1, 1); an event is selected
        when its score is ≥ the threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    weights = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    scores, labels, weights = scores[order], labels[order], weights[order]
    signal = np.cumsum(np.where(labels == 1, weights, 0.0))
    background = np.cumsum(np.where(labels == 1, 0.0, weights))
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    total_s, total_b = signal[-1], background[-1]
    if total_s <= 0 or total_b <= 0:
        raise ValueError(
            f"ROC needs positive total weight in both classes; got signal {total_s}, "
            f"background {total_b}"
        )
    eff_s = np.r_[0.0, signal[last_of_tie] / total_s]
    eff_b = np.r_[0.0, background[last_of_tie] / total_b]
    thresholds = np.r_[np.inf, scores[last_of_tie]]
    return eff_b, eff_s, thresholds


def weighted_roc_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Area under the weighted ROC curve (ε_S against ε_B).

    Args:
        scores: classifier output, larger = more signal-like.
        labels: 1 for signal, 0 for background.
        weights: event weights.

    Returns:
        The area, 0.5 for a random classifier and 1 for a perfect one.
    """
    eff_b, eff_s, _ = weighted_roc_curve(scores, labels, weights)
    return float(np.trapezoid(eff_s, eff_b))
