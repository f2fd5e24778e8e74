"""Atomic directory output on any filesystem Spark can write to (local, ``file://``, ``hdfs://``).

A job writes into a temporary sibling (``<name>.incomplete-<id>``) of its output directory and
renames it into place only when complete, so a failed or killed job never leaves a half-written
dataset where a reader would find it. Renames, listings and deletions on the driver go through
Hadoop's FileSystem API, the layer Spark itself uses; Python tasks that write files themselves
(the convert job's pyarrow Parquet writer) reach the same directory through ``arrow_filesystem``,
given the path as the driver's Hadoop layer qualified it (``qualified_path``), so that a path
without a scheme means the same filesystem on both sides (``fs.defaultFS``, e.g. HDFS, on a
cluster).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pyarrow.fs as pafs
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


def qualified_path(spark: SparkSession, path: str) -> str:
    """``path`` as a full URI of the filesystem Spark would use for it (``file:/x``, ``hdfs://..``).

    A path without a scheme is resolved against Hadoop's ``fs.defaultFS`` and the working
    directory, so executors that write there with another client reach the same place.
    """
    fs, hadoop_path = _filesystem(spark, path)
    return str(fs.makeQualified(hadoop_path).toString())


def make_directory(spark: SparkSession, path: str) -> None:
    """Create ``path`` and its parents (nothing happens if it exists).

    Raises:
        OSError: the filesystem refused.
    """
    fs, hadoop_path = _filesystem(spark, path)
    if not fs.mkdirs(hadoop_path):
        raise OSError(f"could not create the directory {path!r}")


def list_files(spark: SparkSession, directory: str) -> list[str]:
    """Every file under ``directory`` (recursively), as full URIs; empty if it does not exist."""
    fs, hadoop_path = _filesystem(spark, directory)
    if not fs.exists(hadoop_path):
        return []
    found = fs.listFiles(hadoop_path, True)
    files = []
    while found.hasNext():
        files.append(str(found.next().getPath().toString()))
    return files


def arrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for ``uri`` and the path to hand it, for writing from Python tasks.

    Local paths and ``file:`` URIs use pyarrow's local filesystem; ``hdfs://`` uses pyarrow's
    libhdfs client (on every executor: ``HADOOP_HOME``, ``CLASSPATH`` from
    ``hadoop classpath --glob``, and ``ARROW_LIBHDFS_DIR`` where ``libhdfs.so`` is not in
    ``$HADOOP_HOME/lib/native``); ``s3a://`` and ``s3n://`` (Hadoop's names) become pyarrow's
    ``s3://``, whose credentials come from the AWS environment (``AWS_*`` variables, profile,
    instance role), not from Spark's ``fs.s3a.*`` settings; any other scheme goes through
    fsspec, if a package for it is installed.

    Args:
        uri: a local path or URL, as ``qualified_path`` gives it.

    Returns:
        The filesystem and the path inside it.

    Raises:
        OSError: the filesystem cannot be reached (with what it needs).
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    from sparkhep.root.paths import is_local, local_path

    if is_local(uri):
        return pafs.LocalFileSystem(), local_path(uri)
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("s3a", "s3n"):
        uri = "s3" + uri[len(scheme) :]
    try:
        return pafs.FileSystem.from_uri(uri)
    except pa.ArrowInvalid:  # a scheme pyarrow does not know itself
        pass
    except OSError as err:
        raise OSError(
            f"cannot reach {uri!r} with pyarrow's {scheme} client: {err}"
            + (
                " (HDFS needs HADOOP_HOME, CLASSPATH=$(hadoop classpath --glob) and libhdfs on "
                "every executor)"
                if scheme in ("hdfs", "viewfs")
                else ""
            )
        ) from err
    try:
        import fsspec

        filesystem, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as err:
        raise OSError(
            f"cannot write to {uri!r}: neither pyarrow nor fsspec has a filesystem for "
            f"{scheme!r} URLs (install the fsspec package for it)"
        ) from err
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), path


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
