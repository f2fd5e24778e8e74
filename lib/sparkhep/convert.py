"""ROOT → Parquet, one dataset per physics sample, through the ``root`` data source.

Each Spark task reads one file (or entry range) with uproot; the driver only lists files and
reads their metadata. Callers write into a temporary directory and publish it when complete
(see ``sparkhep.storage.atomic_directory``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sparkhep.config import SampleConfig

log = logging.getLogger(__name__)


def read_sample(
    spark: SparkSession, sample: SampleConfig, *, branches: Sequence[str] | None = None
) -> DataFrame:
    """The events of a sample's ROOT files (globs expanded, metadata checked on the driver).

    Args:
        spark: the session (with the ``root`` data source registered).
        sample: the sample's paths (globs allowed) and tree.
        branches: the branches to read; all when omitted.

    Returns:
        A lazy DataFrame: one Spark task per file or entry range reads the events.
    """
    from sparkhep.root import read_root

    return read_root(spark, list(sample.paths), tree=sample.tree, branches=branches)


def write_events(spark: SparkSession, events: DataFrame, *, output: str) -> int:
    """Write events as a zstd Parquet dataset.

    Args:
        spark: the session.
        events: the rows to write.
        output: the Parquet directory to create (see ``atomic_directory`` to publish it).

    Returns:
        The number of rows written (from the written files' metadata).
    """
    events.write.option("compression", "zstd").parquet(output)
    written = spark.read.parquet(output).count()
    log.info("%d events → %s", written, output)
    return written
