"""Event weights for training.

Physics weights (``genWeight``) make each sample physical, but signal and background then carry
wildly different total weights (the QCD weights here are ~1e-6…1). Trees split on weight, so each
class is rescaled to a mean weight of 1 for training (not a sum of 1, which would starve tree
splits of weight). Evaluation always uses the unscaled physics weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

TRAIN_WEIGHT = "train_weight"


def class_balanced_weights(
    df: DataFrame, *, weight_col: str = "weight", label_col: str = "label"
) -> DataFrame:
    """Add ``train_weight`` = weight / (mean weight of the event's class in ``df``).

    Args:
        df: events with a label and a physics weight.
        weight_col: the physics weight column.
        label_col: the 0/1 label column.

    Returns:
        ``df`` with the ``train_weight`` column.

    Raises:
        ValueError: if a class is absent or its weights do not sum to a positive number.
    """
    from pyspark.sql import functions as F

    means = {
        row[label_col]: (row["total"], row["mean"])
        for row in df.groupBy(label_col)
        .agg(F.sum(weight_col).alias("total"), F.mean(weight_col).alias("mean"))
        .collect()
    }
    for label in (0.0, 1.0):
        total, _ = means.get(label, (None, None))
        if not total or total <= 0:
            raise ValueError(
                f"class label={label:g} has total weight {total!r} in the training split; "
                "each class needs events with a positive total weight"
            )
    scale = F.when(F.col(label_col) == 1.0, F.lit(means[1.0][1])).otherwise(F.lit(means[0.0][1]))
    return df.withColumn(TRAIN_WEIGHT, F.col(weight_col) / scale)
