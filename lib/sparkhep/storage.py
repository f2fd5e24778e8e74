"""Atomic directory output on any filesystem Spark can write to (local, ``file://``, ``hdfs://``).

A job writes into a temporary sibling (``<name>.incomplete-<id>``) of its output directory and
renames it into place only when complete, so a failed or killed job never leaves a half-written
dataset where a reader would find it. Renames go through Hadoop's FileSystem API, the layer
Spark itself uses.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def _filesystem(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return hadoop_path.getFileSystem(conf), hadoop_path


def path_exists(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` exists, on whatever filesystem its scheme names."""
    fs, hadoop_path = _filesystem(spark, path)
    return bool(fs.exists(hadoop_path))


def remove_path(spark: SparkSession, path: str) -> None:
    """Delete ``path`` recursively if it exists."""
    fs, hadoop_path = _filesystem(spark, path)
    if fs.exists(hadoop_path):
        fs.delete(hadoop_path, True)


def _temporary_sibling(path: str) -> str:
    parent, _, name = path.rstrip("/").rpartition("/")
    # Not hidden: Spark ignores paths starting with "." or "_" when reading them back.
    return f"{parent}/{name}.incomplete-{uuid.uuid4().hex[:12]}"


@contextmanager
def atomic_directory(spark: SparkSession, path: str) -> Iterator[str]:
    """Yield a temporary path to write to; on success it replaces ``path``, on failure it goes.

    Args:
        spark: the session whose Hadoop configuration reaches the filesystem.
        path: the final output directory.

    Yields:
        The temporary directory path to write into (it does not exist yet).
    """
    temporary = _temporary_sibling(path)
    try:
        yield temporary
    except BaseException:
        remove_path(spark, temporary)
        raise
    fs, final = _filesystem(spark, path)
    _, staged = _filesystem(spark, temporary)
    if fs.exists(final):
        fs.delete(final, True)
    if not fs.mkdirs(final.getParent()) or not fs.rename(staged, final):
        remove_path(spark, temporary)
        raise OSError(f"could not move {temporary!r} into place as {path!r}")
    log.debug("published %s", path)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write a small UTF-8 text file (overwriting it), on whatever filesystem ``path`` names."""
    fs, hadoop_path = _filesystem(spark, path)
    stream = fs.create(hadoop_path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def read_text(spark: SparkSession, path: str) -> str | None:
    """The content of a small UTF-8 text file, or None when it does not exist."""
    fs, hadoop_path = _filesystem(spark, path)
    if not fs.exists(hadoop_path):
        return None
    stream = fs.open(hadoop_path)
    try:
        return str(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()
