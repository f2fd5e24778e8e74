"""ROOT → Parquet, one dataset per physics sample, through the ``root`` data source.

Each Spark task reads one file (or entry range) with uproot; the driver only lists files and
reads their metadata. Callers write into a temporary directory and publish it when complete
(see ``sparkhep.storage.atomic_directory``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

from sparkhep.storage import atomic_directory

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sparkhep.config import JobConfig, SampleConfig

log = logging.getLogger(__name__)


def sample_output(config: JobConfig, sample: str) -> str:
    """Where the convert job puts a sample's Parquet dataset: ``<output>/samples/<sample>``."""
    return f"{config.output.rstrip('/')}/samples/{sample}"


def convert_samples(
    spark: SparkSession, config: JobConfig, *, branches: Sequence[str] | None = None
) -> dict[str, int]:
    """Convert every sample of a job config to Parquet under ``<output>/samples/``.

    All samples appear together or not at all: each is written into a temporary directory and
    the directories are moved into place only once every sample is complete, so a bad file in
    the last sample leaves nothing of the first ones behind.

    Args:
        spark: the session (with the ``root`` data source registered).
        config: the job config (samples and output directory).
        branches: the branches to read; all when omitted.

    Returns:
        Sample name → number of events written.
    """
    events: dict[str, int] = {}
    with ExitStack() as outputs:
        for sample in config.samples:
            temporary = outputs.enter_context(
                atomic_directory(spark, sample_output(config, sample.name))
            )
            frame = read_sample(spark, sample, branches=branches)
            events[sample.name] = write_events(spark, frame, output=temporary)
    return events


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
