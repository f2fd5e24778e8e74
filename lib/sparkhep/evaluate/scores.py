"""Bring (score, label, weight) of scored events to the driver as numpy arrays.

The test split of an analysis is small next to driver memory (10⁶ events are 24 MB here), and
the physics metrics need the whole sorted score distribution, so it is collected through Arrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def signal_probability() -> Column:
    """The Spark column holding P(signal) of a classifier's ``probability`` vector."""
    from pyspark.ml.functions import vector_to_array

    return vector_to_array("probability")[1]


def collect_scores(
    predictions: DataFrame, *, weight_col: str = "weight", label_col: str = "label"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(signal), label, weight) of every row of a transformed DataFrame.

    Args:
        predictions: output of a fitted classifier pipeline's ``transform``.
        weight_col: the physics weight column.
        label_col: the 0/1 label column.

    Returns:
        Three aligned numpy arrays.
    """
    table = predictions.select(signal_probability().alias("score"), label_col, weight_col).toArrow()
    return (
        table.column("score").to_numpy(),
        table.column(label_col).to_numpy(),
        table.column(weight_col).to_numpy(),
    )
