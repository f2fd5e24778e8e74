"""The Spark Python Data Source ``spark.read.format("root")``, reading ROOT files with uproot.

This module is deliberately self-contained: at module level it imports only the standard
library and pyspark, and ``register_root_source`` ships it to the Python workers *by value*.
A worker whose interpreter cannot import sparkhep (or uproot, awkward, pyarrow) therefore still
unpickles the data source, and the first thing it does, importing ``sparkhep.root.reader``,
fails with an error that says how to fix the session, instead of a bare
``ModuleNotFoundError`` from deep inside Spark.

Options (every value arrives as a string; each is checked once, when the read is built):

- ``path`` / ``paths``: what ``.load(path)`` / ``.load([path, ...])`` pass; local paths,
  ``file://`` URLs (both may hold glob patterns or name a directory of ``*.root`` files),
  ``root://`` (XRootD), ``https://`` (HTTP range requests) and ``hdfs://`` URLs.
- ``tree``: the TTree or RNTuple to read, default ``"Events"``.
- ``branches``: comma-separated branch names or glob patterns, default every branch.
- ``exclude``: comma-separated glob patterns of branches to leave out.
- ``entry_step``: entries per Spark partition (``"50000"``), or the uncompressed size of the
  selected branches per partition (``"64 MB"``); default ``"128 MB"``, from each file's own
  branch sizes.
- ``cut``: an expression that keeps an entry when true, applied while reading
  (``"nJet >= 6 and MET_pt > 50"``; see ``sparkhep.root.expression``).
- ``aliases``: new columns from expressions, as a JSON object
  (``'{"HT": "sum(Jet_pt)"}'``) or ``name=expression`` pairs separated by ``;``.
- ``recursive``: ``true`` lists directories recursively (default ``false``).
- ``on_bad_file``: ``fail`` (default) stops at the first unreadable file; ``skip`` leaves it
  out with a warning (the convert job lists it in its manifest).
- ``uint64_as_decimal``: ``true`` reads uint64 branches as ``decimal(20,0)``; by default they
  are bigint and a value of 2**63 or more is an error naming file, branch and entry.

Spark's Python Data Source API has no column pruning: ``df.select("Jet_pt")`` still reads
every branch of the schema. Pass the branches you need in ``branches``.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import sys
import time
from collections.abc import Generator, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pyspark.accumulators import AccumulatorParam
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark import Accumulator
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

SOURCE_NAME = "root"
DEFAULT_TREE = "Events"
DEFAULT_PARTITION_BYTES = 128 * 1000**2
OPTION_NAMES = (
    "path",
    "paths",
    "tree",
    "branches",
    "exclude",
    "entry_step",
    "cut",
    "aliases",
    "recursive",
    "on_bad_file",
    "uint64_as_decimal",
)
BAD_FILE_POLICIES = ("fail", "skip")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(kb|mb|gb|kib|mib|gib)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"kb": 1000, "mb": 1000**2, "gb": 1000**3}
_SIZE_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3})
_ALIAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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
        tree: the name (or path inside the file) of the TTree or RNTuple.
        branches: branch names or glob patterns; None for every branch.
        exclude: glob patterns of branches to leave out.
        entry_step: entries per Spark partition; None to size partitions by bytes.
        partition_bytes: uncompressed bytes of the selected branches per partition.
        cut: the selection expression, or None.
        aliases: ``(name, expression)`` of the computed columns, in order.
        recursive: list directories recursively.
        on_bad_file: ``"fail"`` or ``"skip"``.
        uint64_as_decimal: read uint64 branches as ``decimal(20,0)``.
    """

    paths: tuple[str, ...]
    tree: str = DEFAULT_TREE
    branches: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    entry_step: int | None = None
    partition_bytes: int = DEFAULT_PARTITION_BYTES
    cut: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    recursive: bool = False
    on_bad_file: str = "fail"
    uint64_as_decimal: bool = False


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
    entry_step, partition_bytes = _parse_entry_step(values.get("entry_step"))
    cut = _parse_cut(values.get("cut"))
    aliases = _parse_aliases(values.get("aliases"))
    return RootOptions(
        paths=_parse_paths(values),
        tree=_parse_tree(values.get("tree")),
        branches=_parse_patterns(values.get("branches"), "branches"),
        exclude=_parse_patterns(values.get("exclude"), "exclude") or (),
        entry_step=entry_step,
        partition_bytes=partition_bytes,
        cut=cut,
        aliases=aliases,
        recursive=_parse_bool(values.get("recursive"), "recursive"),
        on_bad_file=_parse_choice(values.get("on_bad_file"), "on_bad_file", BAD_FILE_POLICIES),
        uint64_as_decimal=_parse_bool(values.get("uint64_as_decimal"), "uint64_as_decimal"),
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
            f"data source {SOURCE_NAME!r}: option 'tree' must name a TTree or RNTuple, "
            f"got {value!r}"
        )
    return value.strip()


def _parse_patterns(value: str | None, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    if not names:
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option {option!r} must hold comma-separated branch "
            f"names or glob patterns (e.g. 'nJet,Jet_*'), got {value!r}"
        )
    return names


def _parse_entry_step(value: str | None) -> tuple[int | None, int]:
    if value is None:
        return None, DEFAULT_PARTITION_BYTES
    size = _SIZE.match(value)
    if size:
        number = int(float(size.group(1)) * _SIZE_UNITS[size.group(2).lower()])
        if number > 0:
            return None, number
    try:
        step = int(value.strip().replace("_", ""))
    except ValueError:
        step = 0
    if step <= 0:
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option 'entry_step' must be a positive whole number "
            f"of entries per partition (e.g. '100000') or a size of the selected branches per "
            f"partition (e.g. '128 MB'), got {value!r}"
        )
    return step, DEFAULT_PARTITION_BYTES


def _parse_bool(value: str | None, option: str) -> bool:
    if value is None:
        return False
    text = value.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(
        f"data source {SOURCE_NAME!r}: option {option!r} must be 'true' or 'false', got {value!r}"
    )


def _parse_choice(value: str | None, option: str, choices: tuple[str, ...]) -> str:
    if value is None:
        return choices[0]
    text = value.strip().lower()
    if text not in choices:
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option {option!r} must be one of "
            f"{', '.join(map(repr, choices))}, got {value!r}"
        )
    return text


def _parse_cut(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option 'cut' must be an expression such as "
            f"'nJet >= 6', got {value!r}"
        )
    _expression_module().parse_expression(value, option="cut")
    return value.strip()


def _parse_aliases(value: str | None) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    text = value.strip()
    pairs: list[tuple[str, str]] = []
    if text.startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"data source {SOURCE_NAME!r}: option 'aliases' must be a JSON object of "
                f"name → expression, got {value!r} ({err.msg})"
            ) from err
        if not all(isinstance(v, str) for v in mapping.values()):
            raise ValueError(
                f"data source {SOURCE_NAME!r}: option 'aliases' must map names to expression "
                f"strings, got {value!r}"
            )
        pairs = list(mapping.items())
    else:
        for item in filter(None, (part.strip() for part in text.split(";"))):
            name, sep, expression = item.partition("=")
            if not sep or expression.startswith("="):
                raise ValueError(
                    f"data source {SOURCE_NAME!r}: option 'aliases' expects 'name=expression' "
                    f"pairs separated by ';' or a JSON object, got {item!r} in {value!r}"
                )
            pairs.append((name.strip(), expression.strip()))
    if not pairs:
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option 'aliases' names no column, got {value!r}"
        )
    module = _expression_module()
    for name, expression in pairs:
        if not _ALIAS_NAME.match(name):
            raise ValueError(
                f"data source {SOURCE_NAME!r}: option 'aliases': expected a column name of "
                f"letters, digits and '_', got {name!r}"
            )
        module.parse_expression(expression, option="aliases")
    if len({name for name, _ in pairs}) != len(pairs):
        raise ValueError(
            f"data source {SOURCE_NAME!r}: option 'aliases' names a column twice: {value!r}"
        )
    return tuple(pairs)


def _expression_module() -> ModuleType:
    try:
        from sparkhep.root import expression
    except ImportError as err:
        raise ImportError(_WORKER_HINT.format(error=err, python=sys.executable)) from err
    return expression


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
        index: the partition's position (Spark's partition id, and the ``part-NNNNN`` of the
            files a write of it produces).
        path: the file (absolute local path or URL).
        start: the first entry.
        stop: one past the last entry.
    """

    index: int
    path: str
    start: int
    stop: int


@dataclass(frozen=True)
class SkippedFile(InputPartition):
    """A file left out with ``on_bad_file=skip``: reading it produces no rows, only a tally.

    Attributes:
        index: the partition's position.
        path: the file.
        reason: why it was skipped.
    """

    index: int
    path: str
    reason: str


class TallyParam(AccumulatorParam):
    """Merges per-partition reading reports keyed by partition index.

    A retried task reports the same key again, so merging is idempotent.
    """

    def zero(self, value: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """An empty tally."""
        return {}

    def addInPlace(
        self, value1: dict[int, dict[str, Any]], value2: dict[int, dict[str, Any]]
    ) -> dict[int, dict[str, Any]]:
        """Merge ``value2``'s reports into ``value1``."""
        value1.update(value2)
        return value1


class RootDataSource(DataSource):
    """``spark.read.format("root")``: branches (or RNTuple fields) as columns, one row per entry.

    The schema comes from the first readable file's branches; the driver opens every file
    for its metadata in ``schema()`` (and keeps what it learnt for ``partitions()``), and the
    executors read the events.
    """

    tally: Accumulator | None = None
    """Where readers report each partition (entries, cut, rows, skipped files), or None."""

    def __init__(self, options: MutableMapping[str, str]) -> None:
        """Check that this worker can import the reader, then parse the options.

        Spark builds the source at ``.load()`` even when the user gives a schema (and
        ``schema()`` is never called), so a worker without sparkhep is caught here.

        Args:
            options: the options as Spark passes them.
        """
        super().__init__(options)
        _reader_module()
        self.root_options = parse_root_options(options)
        self.scan: Any = None

    @classmethod
    def name(cls) -> str:
        """The format name: ``spark.read.format("root")``."""
        return SOURCE_NAME

    def schema(self) -> StructType:
        """The Spark schema: the selected branches, widened over every file, then the aliases.

        Returns:
            One field per branch, in the order requested (tree order for glob patterns).
        """
        self.scan = _reader_module().scan_files(self.root_options)
        return self.scan.schema

    def reader(self, schema: StructType) -> RootDataSourceReader:
        """A reader of the columns named by ``schema``.

        Args:
            schema: the schema to produce (from ``schema()`` or given by the user).

        Returns:
            The reader.
        """
        scan, self.scan = self.scan, None
        return RootDataSourceReader(self.root_options, schema, scan=scan, tally=self.tally)


class RootDataSourceReader(DataSourceReader):
    """Plans one partition per (file, entry range) and reads them as Arrow record batches."""

    def __init__(
        self,
        options: RootOptions,
        schema: StructType,
        *,
        scan: Any = None,
        tally: Accumulator | None = None,
    ) -> None:
        self.options = options
        self.schema = schema
        self.scan = scan
        self.tally = tally

    def __getstate__(self) -> dict[str, Any]:
        """Ship the reader to executors without the driver's metadata of every file."""
        return {**self.__dict__, "scan": None}

    def partitions(self) -> list[InputPartition]:
        """One partition per entry range of every readable file, and one per skipped file.

        Returns:
            The partitions, file by file in the order given.
        """
        reader = _reader_module()
        scan = self.scan
        if scan is None:
            scan = reader.scan_files(self.options, columns=self.schema.fieldNames())
        ranges = reader.plan_ranges(scan)
        partitions: list[InputPartition] = [
            RootPartition(index, path, start, stop)
            for index, (path, start, stop) in enumerate(ranges)
        ]
        partitions += [
            SkippedFile(len(partitions) + offset, path, reason)
            for offset, (path, reason) in enumerate(scan.skipped)
        ]
        log.info("%d partition(s), %d skipped file(s)", len(ranges), len(scan.skipped))
        return partitions

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """Read one partition.

        Args:
            partition: a partition from ``partitions()``.

        Returns:
            Record batches that match the Arrow form of the schema exactly.
        """
        return self.read_reported(partition)

    def read_reported(
        self, partition: InputPartition
    ) -> Generator[pa.RecordBatch, None, dict[str, Any] | None]:
        """Read one partition, and return its report once the batches are exhausted.

        The report (also added to ``tally``, if any) is what the convert job checks its counts
        against: ``path``, ``start``, ``stop``, ``entries`` read, ``passed`` the cut, ``rows``
        produced, ``skipped`` (the reason, or None) and ``seconds``. It is the value of the
        generator's ``StopIteration``, so a caller that writes the batches itself (the convert
        job's pyarrow writer) gets it without a second read.

        Args:
            partition: a partition from ``partitions()``.

        Returns:
            A generator of record batches matching the Arrow form of the schema exactly, whose
            return value is the report (None for Spark's stand-in when nothing is planned).
        """
        if isinstance(partition, SkippedFile):
            return self._report(partition.index, partition.path, 0, 0, skipped=partition.reason)
        if not isinstance(partition, RootPartition):  # Spark's stand-in when nothing is planned
            return None
        if self.options.on_bad_file == "skip":
            return (yield from self._read_or_skip(partition))
        return (yield from self._read(partition))

    def _read(self, partition: RootPartition) -> Generator[pa.RecordBatch, None, dict[str, Any]]:
        reader = _reader_module()
        stats = reader.PartitionStats()
        start = time.perf_counter()
        yield from reader.read_partition(
            partition.path,
            options=self.options,
            schema=self.schema,
            entry_start=partition.start,
            entry_stop=partition.stop,
            stats=stats,
        )
        return self._report(
            partition.index,
            partition.path,
            partition.start,
            partition.stop,
            stats=stats,
            seconds=time.perf_counter() - start,
        )

    def _read_or_skip(
        self, partition: RootPartition
    ) -> Generator[pa.RecordBatch, None, dict[str, Any]]:
        """Read the whole partition before yielding, so that a bad file adds no rows."""
        reader = _reader_module()
        stats = reader.PartitionStats()
        start = time.perf_counter()
        try:
            batches = list(
                reader.read_partition(
                    partition.path,
                    options=self.options,
                    schema=self.schema,
                    entry_start=partition.start,
                    entry_stop=partition.stop,
                    stats=stats,
                )
            )
        except (reader.BadFileError, OSError) as err:
            log.warning("skipping %s: %s", partition.path, err)
            return self._report(
                partition.index, partition.path, partition.start, partition.stop, skipped=str(err)
            )
        report = self._report(
            partition.index,
            partition.path,
            partition.start,
            partition.stop,
            stats=stats,
            seconds=time.perf_counter() - start,
        )
        yield from batches
        return report

    def _report(
        self,
        index: int,
        path: str,
        start: int,
        stop: int,
        *,
        stats: Any = None,
        skipped: str | None = None,
        seconds: float = 0.0,
    ) -> dict[str, Any]:
        report = {
            "path": path,
            "start": start,
            "stop": stop,
            "entries": stats.entries if stats else 0,
            "passed": stats.passed if stats else 0,
            "rows": stats.rows if stats else 0,
            "skipped": skipped,
            "seconds": seconds,
        }
        if self.tally is not None:
            self.tally.add({index: report})
        return report


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
