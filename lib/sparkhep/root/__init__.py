"""ROOT files into Spark: the ``root`` Python Data Source over uproot, and ``read_root``.

``spark.read.format("root")`` is registered by ``sparkhep.register(spark)`` (which
``sparkhep.session.build_session`` calls). Each Spark partition is one entry range of one
file, read by uproot into Arrow record batches; jagged branches become ``array<...>`` columns
and counters such as ``nJet`` stay columns. Importing this package pulls in neither pyspark
nor uproot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["read_root"]


def read_root(
    spark: SparkSession,
    paths: str | Sequence[str],
    *,
    tree: str = "Events",
    branches: Sequence[str] | None = None,
    entry_step: int | None = None,
) -> DataFrame:
    """Read TTrees from ROOT files into a DataFrame with ``spark.read.format("root")``.

    Local glob patterns (also in ``file://`` URLs) are expanded here on the driver, and a local
    directory stands for the ``*.root`` files in it; other URLs (``root://``, ``https://``,
    ``hdfs://`` ...) go to uproot unexpanded.

    Args:
        spark: a session with the ``root`` source registered (``sparkhep.register``).
        paths: files, ``file://`` URLs, glob patterns, directories or remote URLs.
        tree: the TTree to read.
        branches: branch names or glob patterns, in column order; None for every branch.
        entry_step: entries per Spark partition; None for the source's default (100000).

    Returns:
        The lazy DataFrame, one row per entry, one column per branch.

    Raises:
        FileNotFoundError: a local pattern matches no file or a local path does not exist.
        ValueError: ``branches`` is empty or ``entry_step`` is not positive.
    """
    from sparkhep.root.paths import expand_paths

    patterns = [paths] if isinstance(paths, str) else list(paths)
    if not patterns:
        raise ValueError(f"expected one or more ROOT file paths, got {paths!r}")
    reader = spark.read.format("root").option("tree", tree)
    if branches is not None:
        if isinstance(branches, str) or not branches:
            raise ValueError(
                f"expected branches as a non-empty sequence of names or patterns, got {branches!r}"
            )
        reader = reader.option("branches", ",".join(branches))
    if entry_step is not None:
        if entry_step <= 0:
            raise ValueError(f"expected a positive entry_step, got {entry_step!r}")
        reader = reader.option("entry_step", str(entry_step))
    return reader.load(expand_paths(patterns))
