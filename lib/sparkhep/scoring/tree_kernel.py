"""The GBT walk compiled with numba, in blocks of rows, branch-free.

Imported only when numba is installed (``build_tree_evaluator`` falls back to Treelite's GTIL,
then numpy). The layout follows XGBoost's own predictor: each tree is walked for a block of 64
rows at once, a fixed ``depth`` steps (leaves point to themselves), and a step is an index
computation, not a branch — the rows of a block are independent, so the CPU overlaps their
loads instead of stalling on mispredicted branches. ``nogil`` lets the server's threads score
requests side by side.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

BLOCK_ROWS = 64


@njit(cache=True, nogil=True)
def gbt_probability(
    x: np.ndarray,
    offsets: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    children: np.ndarray,
    value: np.ndarray,
    depth: int,
) -> np.ndarray:
    """P(signal) = 1 / (1 + exp(-2·Σ leaf values)), left when ``x[feature] <= threshold``.

    Args:
        x: rows x features, float64, C-contiguous.
        offsets: each tree's root in the flat node arrays.
        feature, threshold: per node (anything at a leaf).
        children: ``children[2·node]`` left, ``children[2·node + 1]`` right; a leaf's are itself.
        value: per leaf, already multiplied by its tree's weight (0 elsewhere).
        depth: the deepest tree's depth (steps per walk).

    Returns:
        One probability per row.
    """
    n_rows = x.shape[0]
    out = np.empty(n_rows)
    nodes = np.empty(BLOCK_ROWS, np.int64)
    margin = np.empty(BLOCK_ROWS)
    for start in range(0, n_rows, BLOCK_ROWS):
        rows = min(BLOCK_ROWS, n_rows - start)
        margin[:rows] = 0.0
        for tree in range(offsets.shape[0]):
            nodes[:rows] = offsets[tree]
            for _ in range(depth):
                for row in range(rows):
                    node = nodes[row]
                    # not (x <= t), so that NaN goes right, as in Spark's shouldGoLeft
                    go_right = not (x[start + row, feature[node]] <= threshold[node])
                    nodes[row] = children[2 * node + go_right]
            for row in range(rows):
                margin[row] += value[nodes[row]]
        for row in range(rows):
            out[start + row] = 1.0 / (1.0 + math.exp(-2.0 * margin[row]))
    return out
