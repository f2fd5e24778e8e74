"""The train/test split depends on the event id only, never on partitioning."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import functions as F
from sparkhep.config import SplitConfig
from sparkhep.features.split import assign_split

EVENT_ID = ("run", "luminosityBlock", "event")


def _events(spark, n: int):
    return spark.range(n).select(
        F.lit(1).cast("long").alias("run"),
        (F.floor(F.col("id") / 1000) + 1).alias("luminosityBlock"),
        (F.col("id") + 101 * 10**7).alias("event"),
    )


def test_same_split_for_every_partitioning(spark):
    split = SplitConfig(train=0.7, validation=0.0, test=0.3)
    one = assign_split(_events(spark, 5000).coalesce(1), split, event_id=EVENT_ID)
    many = assign_split(
        _events(spark, 5000).repartition(7, "event").orderBy(F.rand(3)), split, event_id=EVENT_ID
    )
    assert_df_equality(one, many, ignore_row_order=True)


def test_split_is_pmod_xxhash64_of_event_id_against_fractions(spark):
    split = SplitConfig(train=0.6, validation=0.1, test=0.3)
    events = assign_split(_events(spark, 20000), split, event_id=EVENT_ID)
    rows = events.select(
        "split", F.expr("pmod(xxhash64(run, luminosityBlock, event), 100)").alias("bucket")
    ).collect()
    expected = {
        "train": lambda b: b < 60,
        "validation": lambda b: 60 <= b < 70,
        "test": lambda b: b >= 70,
    }
    assert all(expected[row.split](row.bucket) for row in rows)
    counts = {name: sum(r.split == name for r in rows) for name in expected}
    # 20k hashed events: each fraction within 2 % of nominal
    assert abs(counts["train"] / 20000 - 0.6) < 0.02
    assert abs(counts["validation"] / 20000 - 0.1) < 0.02
    assert abs(counts["test"] / 20000 - 0.3) < 0.02
