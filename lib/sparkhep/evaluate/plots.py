"""Plots in CMS style (mplhep), written as PNG with the Agg backend (no display needed).

ROC curve (ε_S against 1/ε_B on a log scale), score distributions train vs test per class (the
visual overtraining check), feature importance for tree models, loss per iteration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sparkhep.evaluate.roc import weighted_roc_curve

Scores = tuple[np.ndarray, np.ndarray, np.ndarray]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    return plt, mplhep


def _finish(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def roc_plot(test: Scores, path: Path, *, label: str = "test") -> Path:
    """ε_S on x, background rejection 1/ε_B on a log y axis.

    Args:
        test: (scores, labels, weights) of the test events.
        path: the PNG to write.
        label: legend text.

    Returns:
        ``path``.
    """
    plt, mplhep = _pyplot()
    eff_b, eff_s, _ = weighted_roc_curve(*test)
    keep = eff_b > 0
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.plot(eff_s[keep], 1.0 / eff_b[keep], label=label)
    ax.plot([0, 1], [1, 1], color="grey", linestyle=":", label="random")
    ax.set_yscale("log")
    ax.set_xlabel(r"Signal efficiency $\varepsilon_S$")
    ax.set_ylabel(r"Background rejection $1/\varepsilon_B$")
    ax.set_xlim(0, 1)
    ax.legend()
    mplhep.cms.label(ax=ax, data=False, text="Simulation", rlabel="13 TeV")
    return _finish(fig, path)


def score_plot(train: Scores, test: Scores, path: Path, *, bins: int = 40) -> Path:
    """Normalised weighted score distributions, train (points) vs test (filled), per class.

    Args:
        train: (scores, labels, weights) of the training events.
        test: (scores, labels, weights) of the test events.
        path: the PNG to write.
        bins: number of bins in [0, 1].

    Returns:
        ``path``.
    """
    plt, mplhep = _pyplot()
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig, ax = plt.subplots(figsize=(8, 7))
    for label, name, colour in ((1, "signal", "tab:red"), (0, "background", "tab:blue")):
        scores, labels, weights = test
        chosen = labels == label
        counts, _ = np.histogram(scores[chosen], edges, weights=weights[chosen], density=True)
        ax.hist(centres, edges, weights=counts, alpha=0.35, color=colour, label=f"{name} (test)")
        scores, labels, weights = train
        chosen = labels == label
        counts, _ = np.histogram(scores[chosen], edges, weights=weights[chosen], density=True)
        ax.plot(centres, counts, "o", color=colour, markersize=4, label=f"{name} (train)")
    ax.set_yscale("log")
    ax.set_xlabel("Classifier output P(signal)")
    ax.set_ylabel("Normalised (weighted)")
    ax.legend(fontsize="small")
    mplhep.cms.label(ax=ax, data=False, text="Simulation", rlabel="13 TeV")
    return _finish(fig, path)


def importance_plot(importances: Mapping[str, float], path: Path, *, top: int = 25) -> Path:
    """Horizontal bars of the ``top`` most important features.

    Args:
        importances: feature name → importance (normalised to sum 1 for display).
        path: the PNG to write.
        top: how many features to show.

    Returns:
        ``path``.
    """
    plt, _ = _pyplot()
    ranked = sorted(importances.items(), key=lambda item: item[1], reverse=True)[:top][::-1]
    total = sum(importances.values()) or 1.0
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(ranked) + 2))
    ax.barh([name for name, _ in ranked], [value / total for _, value in ranked])
    ax.set_xlabel("Relative importance")
    ax.tick_params(axis="y", labelsize="x-small")
    return _finish(fig, path)


def loss_plot(curves: Mapping[str, Sequence[float]], path: Path, *, ylabel: str) -> Path:
    """Loss per iteration, one line per curve (e.g. ``train``, ``validation``).

    Args:
        curves: curve name → loss at each iteration.
        path: the PNG to write.
        ylabel: what the loss is.

    Returns:
        ``path``.
    """
    plt, _ = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 6))
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel("Iteration")
    ax.set_ylabel(ylabel)
    ax.legend()
    return _finish(fig, path)
