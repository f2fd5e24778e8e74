"""The Spark Python Data Source ``spark.read.format("root")``, reading ROOT TTrees with uproot.

This module is deliberately self-contained: at module level it imports only the standard
library and pyspark, and ``register_root_source`` ships it to the Python workers *by value*.
A worker whose interpreter cannot import sparkhep (or uproot, awkward, pyarrow) therefore still
unpickles the data source, and the first thing it does, importing ``sparkhep.root.reader``,
fails with an error that says how to fix the session, instead of a bare
``ModuleNotFoundError`` from deep inside Spark.

Options (every value arrives as a string):

- ``path`` / ``paths``: what ``.load(path)`` / ``.load([path, ...])`` pass; local paths,
  ``file://`` URLs (both may hold glob patterns or name a directory of ``*.root`` files) and
  any URL uproot can open (``root://``, ``https://``, ``hdfs://`` ...).
- ``tree``: the TTree to read, default ``"Events"``.
- ``branches``: comma-separated branch names or glob patterns, default every branch.
- ``entry_step``: entries (events) per Spark partition, default 100000.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

SOURCE_NAME = "root"
DEFAULT_TREE = "Events"
DEFAULT_ENTRY_STEP = 100_000
OPTION_NAMES = ("path", "paths", "tree", "branches", "entry_step")

_WORKER_HINT = (
    "The Python workers of this Spark session cannot import sparkhep's ROOT reader ({error}); "
    "the workers run {python}. Start pyspark with PYSPARK_PYTHON set to the interpreter of the "
    "environment where sparkhep is installed (PYSPARK_PYTHON=/path/to/.venv/bin/python), or "
    "create the session with sparkhep.session.build_session(), which does that in local mode; "
    "on a cluster, ship the packed environment (see submit/) and point "
    "spark.pyspark.python at it."
)


@dataclass(frozen=True)
class RootOptions:
    """The options of one ``spark.read.format("root")`` call, parsed and validated.

    Attributes:
        paths: the files, URLs or glob patterns to read, in the order given.
        tree: the name (or path inside the file) of the TTree.
        branches: branch names or glob patterns; None for every branch.
        entry_step: entries per Spark partition.
    """

    paths: tuple[str, ...]
    tree: str = DEFAULT_TREE
    branches: tuple[str, ...] | None = None
    entry_step: int = DEFAULT_ENTRY_STEP


def parse_root_options(options: Mapping[str, str]) -> RootOptions:
    """Parse the string options Spark hands to the data source.

    Args:
        options: the options as Spark passes them (keys are case-insensitive).

    Returns:
        The validated options.

    Raises:
        ValueError: an option is unknown, missing or malformed.
    """
    values = {key.lower(): value for key, value in options.items()}
    unknown = sorted(set(values) - set(OPTION_NAMES))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, OPTION_NAMES, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"data source {SOURCE_NAME!r}: unknown option(s) {', '.join(hints)}; "
            f"expected some of {', '.join(OPTION_NAMES)}"
        )
    return RootOptions(
        paths=_parse_paths(values),
        tree=_parse_tree(values.get("tree")),
        branches=_parse_branches(values.get("branches")),
        entry_step=_parse_entry_step(values.get("entry_step")),
    )


def _parse_paths(values: Mapping[str, str]) -> tuple[str, ...]:
    paths: list[str] = []
    if values.get("path"):
        paths.append(values["path"])
    if "paths" in values:
        try:
            listed = json.loads(values["paths"])
        except json.JSONDecodeError as err:
            raise ValueError(
                f"data source {SOURCE_NAME!r}: option 'paths' must be a JSON list of strings "
                f"(what .load([path, ...]) passes), got {values['paths']!r}"
            ) from err
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            raise ValueError(
                f"data source {SOURCE_NAME!r}: option 'paths' must be a JSON list of strings, "
                f"got {values['paths']!r}"
            )
        paths.extend(listed)
    if not paths or not all(p.strip() for p in paths):
        raise ValueError(
            f"data source {SOURCE_NAME!r}: expected one or more ROOT file paths, as in "
            f"spark.read.format('root').load('events.root') or .load(['a.root', 'b.root']), "
            f"got {paths!r}"
        )
    return tuple(paths)


def _parse_tree(value: str | None) -> str:
    if value is None:
        return DEFAULT_TREE
    if not value.strip():
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option 'tree' must name a TTree, got {value!r}"
        )
    return value.strip()


def _parse_branches(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    if not names:
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option 'branches' must hold comma-separated branch "
            f"names or glob patterns (e.g. 'nJet,Jet_*'), got {value!r}"
        )
    return names


def _parse_entry_step(value: str | None) -> int:
    if value is None:
        return DEFAULT_ENTRY_STEP
    try:
        step = int(value.strip().replace("_", ""))
    except ValueError:
        step = 0
    if step <= 0:
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option 'entry_step' must be a positive whole number "
            f"of entries per partition, got {value!r}"
        )
    return step


def _reader_module() -> ModuleType:
    """Import ``sparkhep.root.reader``, or explain how to give the workers sparkhep."""
    try:
        from sparkhep.root import reader
    except ImportError as err:
        raise ImportError(_WORKER_HINT.format(error=err, python=sys.executable)) from err
    return reader


@dataclass(frozen=True)
class RootPartition(InputPartition):
    """One Spark partition: the entries ``[start, stop)`` of the tree in one file.

    Attributes:
        path: the file (absolute local path or URL).
        start: the first entry.
        stop: one past the last entry.
    """

    path: str
    start: int
    stop: int


class RootDataSource(DataSource):
    """``spark.read.format("root")``: TTree branches as columns, one row per entry.

    The schema comes from the first file's branches; the driver opens files only for their
    metadata (entry counts, branch types), and the executors read the event data.
    """

    def __init__(self, options: MutableMapping[str, str]) -> None:
        """Parse the options, and check that this worker can import the reader.

        Spark builds the source at ``.load()`` even when the user gives a schema (and
        ``schema()`` is never called), so a worker without sparkhep is caught here.

        Args:
            options: the options as Spark passes them.
        """
        super().__init__(options)
        self.root_options = parse_root_options(options)
        _reader_module()

    @classmethod
    def name(cls) -> str:
        """The format name: ``spark.read.format("root")``."""
        return SOURCE_NAME

    def schema(self) -> StructType:
        """The Spark schema of the selected branches of the first file's tree.

        Returns:
            One field per branch, in the order requested (tree order for glob patterns).
        """
        opts = self.root_options
        return _reader_module().infer_schema(opts.paths, tree=opts.tree, branches=opts.branches)

    def reader(self, schema: StructType) -> RootDataSourceReader:
        """A reader of the branches named by ``schema``.

        Args:
            schema: the schema to produce (from ``schema()`` or given by the user).

        Returns:
            The reader.
        """
        return RootDataSourceReader(self.root_options, schema)


class RootDataSourceReader(DataSourceReader):
    """Plans one partition per (file, entry range) and reads them as Arrow record batches."""

    def __init__(self, options: RootOptions, schema: StructType) -> None:
        self.options = options
        self.schema = schema

    def partitions(self) -> list[RootPartition]:
        """Open every file for its metadata and cut its entries into ``entry_step`` ranges.

        Returns:
            The partitions, file by file in the order given.
        """
        ranges = _reader_module().plan_partitions(
            self.options.paths,
            tree=self.options.tree,
            branches=tuple(self.schema.fieldNames()),
            entry_step=self.options.entry_step,
        )
        return [RootPartition(path, start, stop) for path, start, stop in ranges]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """Read one partition.

        Args:
            partition: a partition from ``partitions()``.

        Returns:
            Record batches that match the Arrow form of the schema exactly.
        """
        if not isinstance(partition, RootPartition):  # Spark's stand-in when no file has entries
            return iter(())
        return _reader_module().read_partition(
            partition.path,
            tree=self.options.tree,
            schema=self.schema,
            entry_start=partition.start,
            entry_stop=partition.stop,
        )


def register_root_source(spark: SparkSession) -> None:
    """Register ``RootDataSource`` as ``spark.read.format("root")``.

    The source module is pickled by value, so that a worker without sparkhep fails with a
    message saying how to fix the session rather than a bare import error.

    Args:
        spark: the session to register the data source in.
    """
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spark.dataSource.register(RootDataSource)
