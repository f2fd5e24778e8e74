"""Deterministic train/validation/test split by a hash of the event id.

``pmod(xxhash64(run, luminosityBlock, event), 100)`` puts an event in the same split on every
run, cluster and partitioning, unlike ``randomSplit`` whose result depends on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from sparkhep.config import SplitConfig

SPLIT_COLUMN = "split"


def event_bucket(event_id: Sequence[str]) -> Column:
    """The event's bucket in 0..99: ``pmod(xxhash64(<event id columns>), 100)``."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(*event_id), F.lit(100))


def assign_split(df: DataFrame, split: SplitConfig, *, event_id: Sequence[str]) -> DataFrame:
    """Add the string column ``split`` (``train``, ``validation`` or ``test``).

    Args:
        df: events with the ``event_id`` columns.
        split: the fractions; bucket < 100·train is train, then validation, the rest test.
        event_id: the columns that identify an event (run, luminosityBlock, event).

    Returns:
        ``df`` with the ``split`` column added.
    """
    from pyspark.sql import functions as F

    bucket = event_bucket(event_id)
    train_edge = round(100 * split.train)
    validation_edge = train_edge + round(100 * split.validation)
    column = (
        F.when(bucket < train_edge, "train")
        .when(bucket < validation_edge, "validation")
        .otherwise("test")
    )
    return df.withColumn(SPLIT_COLUMN, column)
