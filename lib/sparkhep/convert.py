"""ROOT → Parquet, one dataset per physics sample, through the ``root`` data source's reader.

The driver plans the read exactly as ``spark.read.format("root")`` does (the data source's own
metadata scan and partitions: one per file or entry range). Each Spark task then reads its
partition with the source's reader (uproot, Arrow batches cast to the declared schema) and
writes them itself with pyarrow as one zstd Parquet file (row groups of up to
``ROW_GROUP_BYTES`` of Arrow data), or one per value of the partitioning column, named after
the partition and the task attempt. Floating-point columns are not dictionary-encoded
(``dictionary_columns``). Spark's own Parquet writer is not used: it takes the rows
through the JVM's row format and writes them row by row, which made a conversion about three
times as slow as the read alone (BENCHMARKS.md). Per sample:

- ``<output>/samples/<sample>/`` holds the Parquet files and ``_manifest.json`` (the leading
  underscore makes Spark and pyarrow skip it when reading the dataset): the input files with
  size, mtime and entries, the output row count, the schema, the skipped files with reasons,
  the conversion options and events/s.
- A sample whose inputs (paths, sizes, mtimes) and options are those of its manifest is not
  converted again; any change rewrites it.
- Rows written are checked against the readers' own count, per file: rows in the Parquet files
  (from their footers, read back by the task that wrote them) = entries read - entries cut. A
  mismatch fails the job.
- Exactly once despite retried, speculative or lost tasks: each task attempt writes files of
  its own name and returns their names with its counts; Spark returns the result of one
  successful attempt per partition, and the driver deletes every other file in the directory
  (of failed attempts, of attempts on lost executors) before publishing it.
- Everything is written into temporary directories that move into place only when every sample
  is complete (``sparkhep.storage.atomic_directory``), so a failed or killed job never leaves a
  half dataset. With ``on_bad_file="skip"`` unreadable files are left out and listed in the
  manifest; the good files are converted completely.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sparkhep.storage import (
    arrow_filesystem,
    atomic_directory,
    list_files,
    make_directory,
    path_exists,
    qualified_path,
    read_text,
    remove_path,
    write_text,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    from pyspark import Accumulator
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.datasource import InputPartition
    from pyspark.sql.types import StructType

    from sparkhep.config import JobConfig, SampleConfig
    from sparkhep.root.source import RootDataSourceReader

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
MANIFEST_VERSION = 1
ROW_GROUP_BYTES = 128 * 1024**2
"""Arrow bytes (uncompressed) per Parquet row group at most: Spark's own default block size,
which counts parquet-mr's encoded buffer, so these groups are no larger than Spark's."""
MAX_PARTITION_VALUES = 10_000
"""Distinct values of the partitioning column one task may write (pyarrow's default is 1024)."""
LISTED_FILES = 5
PROGRESS_SECONDS = 1.0
_PYTHON_ERROR = re.compile(
    r"(?:^|\n)\s*(?:[\w.]+\.)?(BadFileError|ValueError|OverflowError|TypeError|"
    r"FileNotFoundError|ImportError|OSError|KeyError): ([^\n]+)"
)


class ConversionError(RuntimeError):
    """A sample could not be converted; the message names the sample and the first cause."""


@dataclass(frozen=True)
class ConvertOptions:
    """How to read and write every sample (the ``root`` source options, plus the output's).

    Attributes:
        branches: branch names or glob patterns; None for every branch.
        exclude: glob patterns of branches to leave out.
        cut: keep entries for which this expression is true.
        aliases: ``(name, expression)`` columns to add.
        entry_step: entries (or a size such as ``"64 MB"``) per partition; None for the
            source's default.
        recursive: list input directories recursively.
        on_bad_file: ``"fail"`` or ``"skip"``.
        uint64_as_decimal: read uint64 branches as ``decimal(20,0)``.
        partition_by: a column to partition the Parquet dataset by (``col=value/`` dirs).
        force: convert even when the manifest says nothing changed.
    """

    branches: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    cut: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    entry_step: int | str | None = None
    recursive: bool = False
    on_bad_file: str = "fail"
    uint64_as_decimal: bool = False
    partition_by: str | None = None
    force: bool = False

    def fingerprint(self) -> dict[str, Any]:
        """The options that decide the output (everything but ``force``)."""
        values = asdict(self)
        values.pop("force")
        values["branches"] = list(self.branches) if self.branches is not None else None
        values["exclude"] = list(self.exclude)
        values["aliases"] = [list(pair) for pair in self.aliases]
        return values

    def reading(self) -> dict[str, Any]:
        """The keyword arguments of ``read_root`` / ``root_source_options`` (but ``branches``)."""
        return {
            "exclude": self.exclude,
            "entry_step": self.entry_step,
            "cut": self.cut,
            "aliases": dict(self.aliases) or None,
            "recursive": self.recursive,
            "on_bad_file": self.on_bad_file,
            "uint64_as_decimal": self.uint64_as_decimal,
        }


@dataclass(frozen=True)
class InputFile:
    """One input file as converted.

    Attributes:
        path: the file.
        size: bytes (None where the storage does not say).
        mtime: modification time, seconds since the epoch (None where unknown).
        entries: entries read.
        entries_cut: entries the cut removed.
        rows: rows written.
    """

    path: str
    size: int | None
    mtime: float | None
    entries: int
    entries_cut: int
    rows: int


@dataclass(frozen=True)
class SkippedInput:
    """An input file left out with ``on_bad_file="skip"``, and why."""

    path: str
    size: int | None
    mtime: float | None
    reason: str


@dataclass(frozen=True)
class SampleConversion:
    """What converting one sample did (or found already done).

    Attributes:
        name: the sample.
        output: the Parquet dataset directory.
        rows: rows in the dataset.
        inputs: the converted files.
        skipped: the files left out.
        seconds: wall time of the conversion (of the earlier one when reused).
        events_per_second: entries read per second of wall time.
        reused: True when the inputs were unchanged and nothing was written.
    """

    name: str
    output: str
    rows: int
    inputs: tuple[InputFile, ...]
    skipped: tuple[SkippedInput, ...]
    seconds: float
    events_per_second: float
    reused: bool = False

    @property
    def entries(self) -> int:
        """Entries read from all converted files."""
        return sum(f.entries for f in self.inputs)


@dataclass(frozen=True)
class ConvertProgress:
    """A progress report while a sample converts.

    Attributes:
        sample: the sample.
        files_done: files with at least one finished partition (or skipped).
        files_total: files listed.
        events_done: entries read so far.
        seconds: since the sample's conversion started.
    """

    sample: str
    files_done: int
    files_total: int
    events_done: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Entries read per second so far."""
        return self.events_done / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[ConvertProgress], None]


@dataclass
class _Listing:
    files: list[str]
    statuses: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplePlan:
    """A sample's read as the ``root`` data source plans it, before anything is read.

    Attributes:
        schema: the columns (what ``spark.read.format("root")`` gives for the same options).
        reader: the data source's reader (shipped to the tasks).
        partitions: one per (file, entry range), then one per skipped file.
    """

    schema: StructType
    reader: RootDataSourceReader
    partitions: tuple[InputPartition, ...]


@dataclass(frozen=True)
class WrittenPart:
    """What one task wrote for one partition (the result of its successful attempt).

    Attributes:
        index: the partition's index.
        files: the Parquet files written, relative to the output directory (none when the
            partition had no rows).
        rows: rows in those files, from their footers.
        report: the reader's report of the partition (entries read, passed the cut, skipped).
    """

    index: int
    files: tuple[str, ...]
    rows: int
    report: dict[str, Any] | None


def sample_output(config: JobConfig, sample: str) -> str:
    """Where the convert job puts a sample's Parquet dataset: ``<output>/samples/<sample>``."""
    return f"{config.output.rstrip('/')}/samples/{sample}"


def convert_samples(
    spark: SparkSession,
    config: JobConfig,
    *,
    branches: Sequence[str] | None = None,
    options: ConvertOptions | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, int]:
    """Convert every sample of a job config to Parquet under ``<output>/samples/``.

    Args:
        spark: the session (with the ``root`` data source registered).
        config: the job config (samples and output directory).
        branches: the branches to read (overrides ``options.branches``); all when omitted.
        options: how to read and write; defaults otherwise.
        progress: called about once a second while a sample converts.

    Returns:
        Sample name → number of events written.
    """
    options = options or ConvertOptions()
    if branches is not None:
        options = ConvertOptions(**{**asdict(options), "branches": tuple(branches)})
    return {c.name: c.rows for c in convert_job(spark, config, options=options, progress=progress)}


def convert_job(
    spark: SparkSession,
    config: JobConfig,
    *,
    options: ConvertOptions,
    progress: ProgressCallback | None = None,
) -> list[SampleConversion]:
    """Convert every sample whose inputs changed; all of them appear together or none.

    Each changed sample is written into a temporary directory, and the directories are moved
    into place only once every sample is complete, so a bad file in the last sample leaves
    nothing of the first ones behind.

    Args:
        spark: the session (with the ``root`` data source registered).
        config: the job config (samples and output directory).
        options: how to read and write.
        progress: called about once a second while a sample converts.

    Returns:
        One result per sample, in config order.

    Raises:
        FileNotFoundError: a sample's pattern matches no file.
        ConversionError: a file is bad (with ``on_bad_file="fail"``), the event counts do not
            add up, or Spark failed; nothing is published.
    """
    results = []
    with ExitStack() as outputs:
        for sample in config.samples:
            output = sample_output(config, sample.name)
            listing = _list_inputs(sample, options)
            reused = None if options.force else _reuse(spark, output, sample, options, listing)
            if reused is not None:
                log.info("sample %s: inputs unchanged since %s, not converted", sample.name, output)
                results.append(reused)
                continue
            temporary = outputs.enter_context(atomic_directory(spark, output))
            results.append(
                convert_sample(
                    spark,
                    sample,
                    output=output,
                    temporary=temporary,
                    options=options,
                    listing=listing,
                    progress=progress,
                )
            )
    return results


def convert_sample(
    spark: SparkSession,
    sample: SampleConfig,
    *,
    output: str,
    temporary: str,
    options: ConvertOptions,
    listing: _Listing | None = None,
    progress: ProgressCallback | None = None,
) -> SampleConversion:
    """Convert one sample into ``temporary`` (Parquet and manifest), checking every count.

    Args:
        spark: the session.
        sample: the sample's paths and tree.
        output: where the dataset will be published (recorded in the manifest).
        temporary: the directory to write (it does not exist yet).
        options: how to read and write.
        listing: the listed input files, if already listed.
        progress: called about once a second while Spark works.

    Returns:
        What was converted.

    Raises:
        ConversionError: see ``convert_job``.
    """
    listing = listing or _list_inputs(sample, options)
    files = list(listing.files)
    excluded: dict[str, str] = {}
    for _attempt in range(2):
        start = time.perf_counter()
        tally, rows_by_partition, schema = _write(
            spark, sample, files, temporary, options, progress
        )
        seconds = time.perf_counter() - start
        partial = _partly_skipped(tally)
        if not partial:
            break
        # A file that failed in some entry ranges but not others: leave it out whole and redo.
        log.warning(
            "sample %s: %d file(s) failed part-way; converting again without them",
            sample.name,
            len(partial),
        )
        excluded.update(partial)
        files = [f for f in files if f not in partial]
        _remove(spark, temporary)
    else:
        raise ConversionError(
            f"sample {sample.name!r}: files kept failing part-way: {sorted(partial)!r}"
        )
    inputs, skipped = _check_counts(sample.name, tally, rows_by_partition, listing)
    skipped += [
        SkippedInput(path, *_status_pair(listing, path), reason)
        for path, reason in excluded.items()
    ]
    rows = sum(rows_by_partition.values())
    entries = sum(f.entries for f in inputs)
    conversion = SampleConversion(
        name=sample.name,
        output=output,
        rows=rows,
        inputs=tuple(inputs),
        skipped=tuple(skipped),
        seconds=seconds,
        events_per_second=entries / seconds if seconds > 0 else 0.0,
    )
    manifest = _manifest(conversion, sample, options, listing, schema)
    write_text(spark, f"{temporary}/{MANIFEST}", json.dumps(manifest, indent=1))
    log.info(
        "sample %s: %d rows from %d file(s) (%d skipped) in %.1f s, %.0f events/s",
        sample.name,
        rows,
        len(inputs),
        len(skipped),
        seconds,
        conversion.events_per_second,
    )
    return conversion


def read_sample(
    spark: SparkSession,
    sample: SampleConfig,
    *,
    branches: Sequence[str] | None = None,
    options: ConvertOptions | None = None,
    source: str = "root",
) -> DataFrame:
    """The events of a sample's ROOT files (globs expanded, metadata checked on the driver).

    Args:
        spark: the session (with the ``root`` data source registered).
        sample: the sample's paths (globs allowed) and tree.
        branches: the branches to read (overrides ``options.branches``); all when omitted.
        options: the reading options; defaults otherwise.
        source: the registered format name to read with.

    Returns:
        A lazy DataFrame: one Spark task per file or entry range reads the events.
    """
    from sparkhep.root import read_root

    options = options or ConvertOptions()
    return read_root(
        spark,
        list(sample.paths),
        tree=sample.tree,
        branches=tuple(branches) if branches is not None else options.branches,
        source=source,
        **options.reading(),
    )


def plan_sample(
    sample: SampleConfig,
    *,
    options: ConvertOptions | None = None,
    tally: Accumulator | None = None,
) -> SamplePlan:
    """Plan a sample's read in the driver with the ``root`` data source's own code.

    The schema and the partitions are those ``read_sample`` would give Spark (the metadata of
    every file is read here, in a thread pool).

    Args:
        sample: the sample's paths (globs allowed) and tree.
        options: the reading options; defaults otherwise.
        tally: an accumulator made with ``TallyParam``, where the tasks report each partition
            (for progress).

    Returns:
        The plan.

    Raises:
        FileNotFoundError: a pattern matches no file.
        ValueError, TypeError: a bad file (with ``on_bad_file="fail"``), no readable file, or
            a bad option; the message names the file or option.
    """
    from sparkhep.root import root_source_options
    from sparkhep.root.paths import expand_paths
    from sparkhep.root.source import RootDataSource

    options = options or ConvertOptions()
    source_options = root_source_options(
        tree=sample.tree, branches=options.branches, **options.reading()
    )
    paths = expand_paths(list(sample.paths), recursive=options.recursive)
    source = RootDataSource({**source_options, "paths": json.dumps(paths)})
    source.tally = tally
    schema = source.schema()
    reader = source.reader(schema)
    return SamplePlan(schema=schema, reader=reader, partitions=tuple(reader.partitions()))


def write_parquet_parts(
    spark: SparkSession,
    plan: SamplePlan,
    *,
    output: str,
    partition_by: str | None = None,
) -> list[WrittenPart]:
    """Read every partition of ``plan`` and write it as zstd Parquet with pyarrow, in Spark tasks.

    One Spark task per partition reads it with the data source's reader and writes
    ``part-<index>-<run>-<attempt>.zstd.parquet`` (under ``column=value/`` directories with
    ``partition_by``, one file per value). Only the files named by the successful attempts
    are kept: any other file in ``output`` afterwards (left by a failed attempt, or an
    attempt on a lost executor) is deleted. When no partition has a row, one empty file with
    the schema is written, so that the dataset can still be read.

    Args:
        spark: the session.
        plan: what to read (``plan_sample``).
        output: the directory to write into, on any filesystem of ``arrow_filesystem``.
        partition_by: a column to partition the dataset by (``column=value/`` directories).

    Returns:
        One result per partition, by index.

    Raises:
        ValueError: ``partition_by`` is not a column, or not one of numbers, booleans or
            strings.
        pyspark's errors: a task failed (e.g. a bad file with ``on_bad_file="fail"``).
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    if partition_by is not None:
        _check_partition_column(plan.schema, partition_by)
    make_directory(spark, output)
    directory = qualified_path(spark, output).rstrip("/")
    arrow_schema = to_arrow_schema(plan.schema)
    task = functools.partial(
        _write_task,
        reader=plan.reader,
        directory=directory,
        run=uuid.uuid4().hex[:12],
        schema=arrow_schema,
        dictionary=dictionary_columns(arrow_schema),
        partition_by=partition_by,
    )
    context = spark.sparkContext
    context.setJobDescription(f"ROOT → Parquet {output} ({len(plan.partitions)} partitions)")
    try:
        partitions = list(plan.partitions)
        written = context.parallelize(partitions, max(len(partitions), 1)).mapPartitions(task)
        parts = sorted(written.collect(), key=lambda part: part.index)
    finally:
        context.setJobDescription(None)
    kept = {f"{directory}/{name}" for part in parts for name in part.files}
    listed = list_files(spark, directory)
    unlisted = sorted(kept - set(listed))
    if unlisted:  # names that do not match the listing: deleting "strays" would lose events
        raise OSError(
            f"files the tasks wrote are missing from the listing of {output!r}: "
            f"{unlisted[:LISTED_FILES]!r}; expected every written file to be listed"
        )
    strays = [path for path in listed if path not in kept]
    for path in strays:
        remove_path(spark, path)
    if strays:
        log.warning("deleted %d file(s) of failed or lost task attempts in %s", len(strays), output)
    if not kept:
        _write_empty(directory, arrow_schema)
    return parts


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The Parquet columns worth a dictionary: all but the floating-point ones.

    pyarrow tries a dictionary for every column by default and falls back to plain encoding
    when it grows past a page; floating-point physics values hardly ever repeat, so for them the
    attempt is wasted work and the fallback a worse encoding. On 10^5 generated events
    (18 columns) the writer took 0.20 s and 15.4 MB with a dictionary tried everywhere, 0.12 s
    and 12.1 MB with dictionaries for the other columns only (the CMS NanoAOD file: 0.58 vs
    0.54 MB); flags, counters, indices and labels, which do repeat, keep theirs. pyarrow names
    the columns by their leaf paths (``Jet_jetId.list.element``), so the paths are read from
    the Parquet schema pyarrow makes of ``schema``.

    Args:
        schema: the Arrow schema of the data written.

    Returns:
        The leaf column paths to dictionary-encode.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    parquet_schema = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    return [
        column.path
        for column in (parquet_schema.column(i) for i in range(len(parquet_schema)))
        if column.physical_type not in ("FLOAT", "DOUBLE")
    ]


def write_events(events: DataFrame, *, output: str, partition_by: str | None = None) -> None:
    """Write any DataFrame of events as a zstd Parquet dataset with Spark's own writer.

    The convert job writes with pyarrow instead (``write_parquet_parts``); this is for events
    that are already a DataFrame (and the ingestion benchmark's comparison).

    Args:
        events: the rows to write.
        output: the Parquet directory to create (see ``atomic_directory`` to publish it).
        partition_by: a column to partition the dataset by (``column=value/`` directories).

    Raises:
        ValueError: ``partition_by`` is not a column of ``events``.
    """
    writer = events.write.option("compression", "zstd").option(
        "parquet.block.size", ROW_GROUP_BYTES
    )
    if partition_by is not None:
        _check_partition_column(events.schema, partition_by)
        writer = writer.partitionBy(partition_by)
    writer.parquet(output)
    log.info("events → %s", output)


def _check_partition_column(schema: StructType, partition_by: str) -> None:
    from pyspark.sql.types import ArrayType, MapType, StructType

    if partition_by not in schema.fieldNames():
        close = difflib.get_close_matches(partition_by, schema.fieldNames(), n=3)
        raise ValueError(
            f"partition column {partition_by!r} is not a column of the events; expected one "
            f"of the columns read (closest: {', '.join(map(repr, close)) or 'none'})"
        )
    data_type = schema[partition_by].dataType
    if isinstance(data_type, ArrayType | MapType | StructType):
        raise ValueError(
            f"partition column {partition_by!r} is {data_type.simpleString()}; expected a "
            f"column of numbers, booleans or strings (one value per event)"
        )


# --- the tasks ---------------------------------------------------------------------------------


class _Reported:
    """Iterate a reader's batches and keep the report it returns at the end."""

    def __init__(self, batches: Generator[pa.RecordBatch, None, dict[str, Any] | None]) -> None:
        self._batches = batches
        self.report: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        self.report = yield from self._batches


def _write_task(
    partitions: Iterable[InputPartition],
    *,
    reader: RootDataSourceReader,
    directory: str,
    run: str,
    schema: pa.Schema,
    dictionary: Sequence[str],
    partition_by: str | None,
) -> Iterator[WrittenPart]:
    """In a Spark task: read each partition and write its Parquet file(s)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    attempt = context.taskAttemptId() if context is not None else 0
    filesystem, base = arrow_filesystem(directory)
    for partition in partitions:
        batches = _Reported(reader.read_reported(partition))
        stem = f"part-{partition.index:05d}-{run}-{attempt}"
        if partition_by is None:
            name = f"{stem}.zstd.parquet"
            files, rows = _write_file(
                batches, filesystem, base, name, schema, dictionary=dictionary
            )
        else:
            files, rows = _write_partitioned(
                batches, filesystem, base, stem, schema, partition_by, dictionary=dictionary
            )
        yield WrittenPart(partition.index, files, rows, batches.report)


def _write_file(
    batches: Iterable[pa.RecordBatch],
    filesystem: pafs.FileSystem,
    base: str,
    name: str,
    schema: pa.Schema,
    *,
    dictionary: Sequence[str],
) -> tuple[tuple[str, ...], int]:
    """Write the batches as one file, in row groups of about ``ROW_GROUP_BYTES``.

    ``dictionary`` names the columns to dictionary-encode (``dictionary_columns``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = f"{base}/{name}"
    writer = None
    pending: list[pa.RecordBatch] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal writer, pending, pending_bytes
        if writer is None:
            writer = pq.ParquetWriter(
                path,
                schema,
                filesystem=filesystem,
                compression="zstd",
                use_dictionary=list(dictionary),
            )
        table = pa.Table.from_batches(pending, schema=schema)
        writer.write_table(table, row_group_size=table.num_rows)
        pending, pending_bytes = [], 0

    try:
        for batch in batches:
            if batch.num_rows:
                pending.append(batch)
                pending_bytes += batch.nbytes
                if pending_bytes >= ROW_GROUP_BYTES:
                    flush()
        if pending:
            flush()
        if writer is None:
            return (), 0
        writer.close()
    except BaseException:
        if writer is not None:
            _discard(filesystem, path, writer)
        raise
    return (name,), pq.read_metadata(path, filesystem=filesystem).num_rows


def _write_partitioned(
    batches: Iterable[pa.RecordBatch],
    filesystem: pafs.FileSystem,
    base: str,
    stem: str,
    schema: pa.Schema,
    partition_by: str,
    *,
    dictionary: Sequence[str],
) -> tuple[tuple[str, ...], int]:
    """Write the batches under ``column=value/`` directories (Hive style, as Spark reads)."""
    import itertools

    import pyarrow as pa
    import pyarrow.dataset as ds

    iterator = iter(batches)
    first = next((batch for batch in iterator if batch.num_rows), None)
    if first is None:
        return (), 0
    rows_per_group = max(1, int(ROW_GROUP_BYTES // max(first.nbytes / first.num_rows, 1.0)))
    written: dict[str, int] = {}

    def visit(file: Any) -> None:
        written[file.path] = file.metadata.num_rows

    try:
        ds.write_dataset(
            itertools.chain([first], iterator),
            base,
            schema=schema,
            format="parquet",
            filesystem=filesystem,
            partitioning=ds.partitioning(pa.schema([schema.field(partition_by)]), flavor="hive"),
            basename_template=f"{stem}-{{i}}.zstd.parquet",
            file_options=ds.ParquetFileFormat().make_write_options(
                compression="zstd", use_dictionary=list(dictionary)
            ),
            existing_data_behavior="overwrite_or_ignore",
            max_partitions=MAX_PARTITION_VALUES,
            max_open_files=MAX_PARTITION_VALUES,
            min_rows_per_group=rows_per_group,
            max_rows_per_group=rows_per_group,
            file_visitor=visit,
            use_threads=False,
        )
    except BaseException:
        for path in written:
            _discard(filesystem, path)
        raise
    prefix = f"{base.rstrip('/')}/"
    files = tuple(sorted(path.removeprefix(prefix) for path in written))
    return files, sum(written.values())


def _discard(filesystem: pafs.FileSystem, path: str, writer: Any = None) -> None:
    """Best effort: a failed attempt's file; the driver deletes what is left anyway."""
    try:
        if writer is not None:
            writer.close()
        filesystem.delete_file(path)
    except OSError as err:
        log.warning("could not delete %s of a failed task: %s", path, err)


def _write_empty(directory: str, schema: pa.Schema) -> None:
    import pyarrow.parquet as pq

    filesystem, base = arrow_filesystem(directory)
    pq.write_table(
        schema.empty_table(),
        f"{base}/part-00000-empty.zstd.parquet",
        filesystem=filesystem,
        compression="zstd",
    )


# --- steps -----------------------------------------------------------------------------------


def _list_inputs(sample: SampleConfig, options: ConvertOptions) -> _Listing:
    from sparkhep.root.paths import expand_paths, file_status

    files = expand_paths(list(sample.paths), recursive=options.recursive)
    unique = list(dict.fromkeys(files))
    with ThreadPoolExecutor(min(16, len(unique))) as pool:
        statuses = dict(zip(unique, pool.map(file_status, unique), strict=True))
    return _Listing(files=files, statuses=statuses)


def _status_pair(listing: _Listing, path: str) -> tuple[int | None, float | None]:
    status = listing.statuses.get(path)
    return (status.size, status.mtime) if status else (None, None)


def _fingerprint(sample: SampleConfig, options: ConvertOptions, listing: _Listing) -> dict:
    return {
        "version": MANIFEST_VERSION,
        "tree": sample.tree,
        "options": options.fingerprint(),
        "files": [[path, *_status_pair(listing, path)] for path in listing.files],
    }


def _reuse(
    spark: SparkSession,
    output: str,
    sample: SampleConfig,
    options: ConvertOptions,
    listing: _Listing,
) -> SampleConversion | None:
    fingerprint = _fingerprint(sample, options, listing)
    if any(size is None or mtime is None for _, size, mtime in fingerprint["files"]):
        return None
    text = read_text(spark, f"{output}/{MANIFEST}")
    if text is None:
        return None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError:
        log.warning("ignoring unreadable manifest %s/%s", output, MANIFEST)
        return None
    if manifest.get("fingerprint") != fingerprint:
        return None
    return SampleConversion(
        name=sample.name,
        output=output,
        rows=manifest["output"]["rows"],
        inputs=tuple(InputFile(**f) for f in manifest["inputs"]),
        skipped=tuple(SkippedInput(**f) for f in manifest["skipped"]),
        seconds=manifest["seconds"],
        events_per_second=manifest["events_per_second"],
        reused=True,
    )


def _write(
    spark: SparkSession,
    sample: SampleConfig,
    files: list[str],
    temporary: str,
    options: ConvertOptions,
    progress: ProgressCallback | None,
) -> tuple[dict[int, dict[str, Any]], dict[int, int], dict[str, Any]]:
    """Plan and write a sample: its reading reports and rows written by partition, its schema."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    from sparkhep.root.source import TallyParam

    tally = spark.sparkContext.accumulator({}, TallyParam())
    done = threading.Event()
    watcher = None
    if progress is not None:
        watcher = threading.Thread(
            target=_watch, args=(tally, sample.name, len(files), progress, done), daemon=True
        )
        watcher.start()
    try:
        if not files:
            raise ConversionError(f"sample {sample.name!r}: no readable input file is left")
        listed = replace(sample, paths=tuple(files))
        plan = plan_sample(listed, options=options, tally=tally)
        parts = write_parquet_parts(
            spark, plan, output=temporary, partition_by=options.partition_by
        )
    except (PySparkException, Py4JJavaError) as err:  # a task failed: its Python error
        raise ConversionError(f"sample {sample.name!r}: {_python_cause(err)}") from err
    except (ValueError, TypeError, OSError, ImportError) as err:  # planning, options, storage
        raise ConversionError(f"sample {sample.name!r}: {type(err).__name__}: {err}") from err
    finally:
        done.set()
        if watcher is not None:
            watcher.join(timeout=5 * PROGRESS_SECONDS)
    reports = {part.index: part.report for part in parts if part.report is not None}
    rows = {part.index: part.rows for part in parts if part.files}
    return reports, rows, plan.schema.jsonValue()


def _watch(
    tally: Any, sample: str, files_total: int, progress: ProgressCallback, done: threading.Event
) -> None:
    start = time.perf_counter()
    last = None
    while not done.wait(PROGRESS_SECONDS):
        reports = dict(tally.value)
        state = (
            len({r["path"] for r in reports.values()}),
            sum(r["entries"] for r in reports.values()),
        )
        if state != last:
            last = state
            progress(
                ConvertProgress(
                    sample, state[0], files_total, state[1], time.perf_counter() - start
                )
            )


def _partly_skipped(tally: dict[int, dict[str, Any]]) -> dict[str, str]:
    by_path: dict[str, list[dict[str, Any]]] = {}
    for report in tally.values():
        by_path.setdefault(report["path"], []).append(report)
    partial = {}
    for path, reports in by_path.items():
        failed = [r for r in reports if r["skipped"]]
        if failed and len(failed) < len(reports):
            partial[path] = failed[0]["skipped"]
    return partial


def _check_counts(
    sample: str,
    tally: dict[int, dict[str, Any]],
    rows_by_partition: dict[int, int],
    listing: _Listing,
) -> tuple[list[InputFile], list[SkippedInput]]:
    """Rows written = entries read - entries cut, per partition and so per file."""
    per_file: dict[str, dict[str, int]] = {}
    skipped: dict[str, str] = {}
    problems = []
    for index, report in sorted(tally.items()):
        path = report["path"]
        if report["skipped"]:
            skipped.setdefault(path, report["skipped"])
            continue
        expected_entries = report["stop"] - report["start"]
        cut = report["entries"] - report["passed"]
        written = rows_by_partition.get(index, 0)
        if report["entries"] != expected_entries or written != report["entries"] - cut:
            problems.append(
                f"{path!r} entries [{report['start']}, {report['stop']}): expected "
                f"{expected_entries} entries read and {report['entries']} - {cut} = "
                f"{report['entries'] - cut} rows written, got {report['entries']} read and "
                f"{written} written"
            )
        counts = per_file.setdefault(path, {"entries": 0, "cut": 0, "rows": 0})
        counts["entries"] += report["entries"]
        counts["cut"] += cut
        counts["rows"] += written
    unreported = sorted(set(rows_by_partition) - set(tally))
    if unreported:
        problems.append(f"Parquet files of partitions {unreported} have no reading report")
    missing = [p for p in dict.fromkeys(listing.files) if p not in per_file and p not in skipped]
    if missing:
        problems.append(f"files never read: {missing!r}")
    if problems:
        raise ConversionError(
            f"sample {sample!r}: event counts do not add up: {'; '.join(problems)}"
        )
    inputs = [
        InputFile(path, *_status_pair(listing, path), c["entries"], c["cut"], c["rows"])
        for path, c in per_file.items()
    ]
    return inputs, [
        SkippedInput(path, *_status_pair(listing, path), reason) for path, reason in skipped.items()
    ]


def _manifest(
    conversion: SampleConversion,
    sample: SampleConfig,
    options: ConvertOptions,
    listing: _Listing,
    schema: dict[str, Any],
) -> dict[str, Any]:
    from sparkhep import __version__

    return {
        "sparkhep_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sample": sample.name,
        "tree": sample.tree,
        "options": options.fingerprint(),
        "inputs": [asdict(f) for f in conversion.inputs],
        "skipped": [asdict(f) for f in conversion.skipped],
        "output": {
            "path": conversion.output,
            "rows": conversion.rows,
            "format": "parquet",
            "compression": "zstd",
            "row_group_bytes": ROW_GROUP_BYTES,
            "partition_by": options.partition_by,
        },
        "schema": schema,
        "entries": conversion.entries,
        "seconds": conversion.seconds,
        "events_per_second": conversion.events_per_second,
        "fingerprint": _fingerprint(sample, options, listing),
    }


def _remove(spark: SparkSession, path: str) -> None:
    if path_exists(spark, path):
        remove_path(spark, path)


def _python_cause(err: Exception) -> str:
    """The Python error inside a Spark error (the last one raised), else Spark's message."""
    text = str(err)
    found = _PYTHON_ERROR.findall(text)
    if found:
        kind, message = found[-1]
        return f"{kind}: {message.strip()}"
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__
