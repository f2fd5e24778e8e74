"""The figures a physicist reads off a classifier, each with its uncertainty and effective N.

- ``test_auc``: weighted ROC area.
- ``eff_s_at_eff_b_1e-3`` … ``1e-1``: signal efficiency where the background efficiency is
  10⁻³, 10⁻², 10⁻¹ (linear interpolation along the weighted ROC curve).
- ``rej_b_at_eff_s_0.5``, ``rej_b_at_eff_s_0.8``: background rejection 1/ε_B at 50 % and 80 %
  signal efficiency.
- ``ks_p_signal``, ``ks_p_background``: weighted Kolmogorov-Smirnov p-value between the train
  and test score distributions of each class (the overtraining check).

Uncertainties come from a Poisson bootstrap (each event's weight multiplied by a Poisson(1)
count per replica; the score order is shared by all replicas, so it is sorted once). Each figure
also carries the Kish effective number of events behind it, (Σw)²/Σw², of the background
events selected at its working point (the rare side) — so a rejection that rests on a handful
of weighted events says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EFF_B_POINTS = {"1e-3": 1e-3, "1e-2": 1e-2, "1e-1": 1e-1}
EFF_S_POINTS = {"0.5": 0.5, "0.8": 0.8}
METRIC_NAMES = (
    "test_auc",
    *(f"eff_s_at_eff_b_{k}" for k in EFF_B_POINTS),
    *(f"rej_b_at_eff_s_{k}" for k in EFF_S_POINTS),
    "ks_p_signal",
    "ks_p_background",
)


@dataclass(frozen=True)
class Metric:
    """One figure of merit: value, bootstrap standard deviation, Kish effective N behind it."""

    value: float
    error: float = float("nan")
    n_eff: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        """``{"value": …, "error": …, "n_eff": …}``."""
        return asdict(self)


def kish_n_eff(weights: np.ndarray) -> float:
    """Kish effective sample size (Σw)² / Σw² (0 for no events)."""
    weights = np.asarray(weights, dtype=np.float64)
    squares = float(np.sum(weights**2))
    return float(np.sum(weights)) ** 2 / squares if squares > 0 else 0.0


def physics_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> dict[str, Metric]:
    """Weighted AUC, efficiencies and rejections of the test scores, with uncertainties.

    Args:
        scores: P(signal) of the test events.
        labels: 1 for signal, 0 for background.
        weights: physics weights.
        n_bootstrap: Poisson bootstrap replicas (0: no uncertainties).
        seed: for the bootstrap.

    Returns:
        Metric name (``test_auc``, ``eff_s_at_eff_b_*``, ``rej_b_at_eff_s_*``) → ``Metric``.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    is_signal = np.asarray(labels)[order] == 1
    w = np.asarray(weights, dtype=np.float64)[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]

    nominal = _figures(w, is_signal, last_of_tie)
    rng = np.random.default_rng(seed)
    replicas = np.array(
        [_figures(w * rng.poisson(1.0, len(w)), is_signal, last_of_tie) for _ in range(n_bootstrap)]
    ).reshape(n_bootstrap, len(nominal))
    errors = (
        np.nanstd(replicas, axis=0, ddof=1) if n_bootstrap > 1 else np.full(len(nominal), np.nan)
    )

    background_w = np.where(is_signal, 0.0, w)
    cut_b = np.cumsum(background_w)
    cut_b2 = np.cumsum(background_w**2)
    total_b, total_s = cut_b[-1], np.sum(w[is_signal])
    cut_s = np.cumsum(np.where(is_signal, w, 0.0))
    names = ["test_auc", *(f"eff_s_at_eff_b_{k}" for k in EFF_B_POINTS)]
    names += [f"rej_b_at_eff_s_{k}" for k in EFF_S_POINTS]
    n_eff = [kish_n_eff(w)]
    for target in EFF_B_POINTS.values():
        n_eff.append(_n_eff_at(np.searchsorted(cut_b / total_b, target), cut_b, cut_b2))
    for target in EFF_S_POINTS.values():
        n_eff.append(_n_eff_at(np.searchsorted(cut_s / total_s, target), cut_b, cut_b2))
    return {
        name: Metric(float(value), float(error), float(n))
        for name, value, error, n in zip(names, nominal, errors, n_eff, strict=True)
    }


def _n_eff_at(index: int, cut_b: np.ndarray, cut_b2: np.ndarray) -> float:
    """Kish N of the background events selected down to sorted position ``index``."""
    index = min(int(index), len(cut_b) - 1)
    return float(cut_b[index] ** 2 / cut_b2[index]) if cut_b2[index] > 0 else 0.0


def _figures(w: np.ndarray, is_signal: np.ndarray, last_of_tie: np.ndarray) -> list[float]:
    """AUC, ε_S at the ε_B points, 1/ε_B at the ε_S points, for events sorted by score."""
    signal = np.cumsum(np.where(is_signal, w, 0.0))[last_of_tie]
    background = np.cumsum(np.where(is_signal, 0.0, w))[last_of_tie]
    total_s, total_b = signal[-1], background[-1]
    if total_s <= 0 or total_b <= 0:
        return [float("nan")] * (1 + len(EFF_B_POINTS) + len(EFF_S_POINTS))
    eff_s = np.r_[0.0, signal / total_s]
    eff_b = np.r_[0.0, background / total_b]
    figures = [float(np.trapezoid(eff_s, eff_b))]
    figures += [_interpolate(eff_b, eff_s, x) for x in EFF_B_POINTS.values()]
    for target in EFF_S_POINTS.values():
        at = _interpolate(eff_s, eff_b, target)
        figures.append(1.0 / at if at > 0 else float("inf"))
    return figures


def _interpolate(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """y at x = ``at`` along a non-decreasing curve (the last point where x steps past ``at``)."""
    index = int(np.searchsorted(x, at, side="left"))
    if index == 0:
        return float(y[0])
    if index >= len(x):
        return float(y[-1])
    x0, x1, y0, y1 = x[index - 1], x[index], y[index - 1], y[index]
    return float(y0 + (y1 - y0) * (at - x0) / (x1 - x0)) if x1 > x0 else float(y1)


def weighted_ks(
    a: np.ndarray,
    b: np.ndarray,
    *,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test with event weights.

    The statistic is the largest distance between the two weighted empirical CDFs; the p-value
    is the asymptotic one of ``scipy.stats.ks_2samp`` (``kstwo`` with n = n₁n₂/(n₁+n₂)), with
    each sample's Kish effective size in place of its count. With unit weights this is exactly
    ``scipy.stats.ks_2samp(a, b, method="asymp")``, which is also scipy's default beyond
    10 000 events per sample.

    Args:
        a: first sample (e.g. train scores of one class).
        b: second sample (e.g. test scores of the same class).
        weights_a: weights of ``a`` (1 when omitted).
        weights_b: weights of ``b`` (1 when omitted).

    Returns:
        (statistic D, p-value).
    """
    from scipy.stats import kstwo

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    wa = np.ones_like(a) if weights_a is None else np.asarray(weights_a, dtype=np.float64)
    wb = np.ones_like(b) if weights_b is None else np.asarray(weights_b, dtype=np.float64)
    if not len(a) or not len(b) or wa.sum() <= 0 or wb.sum() <= 0:
        return float("nan"), float("nan")
    values = np.concatenate([a, b])
    order = np.argsort(values, kind="stable")
    in_a = np.r_[np.ones(len(a), bool), np.zeros(len(b), bool)][order]
    w = np.concatenate([wa / wa.sum(), wb / wb.sum()])[order]
    cdf_a = np.cumsum(np.where(in_a, w, 0.0))
    cdf_b = np.cumsum(np.where(in_a, 0.0, w))
    sorted_values = values[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_values)), len(sorted_values) - 1]
    statistic = float(np.max(np.abs(cdf_a - cdf_b)[last_of_tie]))
    n_a, n_b = kish_n_eff(wa), kish_n_eff(wb)
    effective = np.round(n_a * n_b / (n_a + n_b))
    return statistic, float(np.clip(kstwo.sf(statistic, max(effective, 1)), 0.0, 1.0))


def overtraining_metrics(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, Metric]:
    """``ks_p_signal`` and ``ks_p_background``: train vs test score distributions per class.

    Args:
        train: (scores, labels, weights) of the training events.
        test: (scores, labels, weights) of the test events.

    Returns:
        Metric name → ``Metric`` (value = p-value, n_eff = the KS effective size).
    """
    out = {}
    for name, label in (("ks_p_signal", 1), ("ks_p_background", 0)):
        s_train, l_train, w_train = train
        s_test, l_test, w_test = test
        a, b = l_train == label, l_test == label
        _, p_value = weighted_ks(
            s_train[a], s_test[b], weights_a=np.abs(w_train[a]), weights_b=np.abs(w_test[b])
        )
        n_a, n_b = kish_n_eff(w_train[a]), kish_n_eff(w_test[b])
        n_eff = n_a * n_b / (n_a + n_b) if n_a + n_b > 0 else 0.0
        out[name] = Metric(p_value, float("nan"), n_eff)
    return out
