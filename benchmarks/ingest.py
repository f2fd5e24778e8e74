"""ROOT → Parquet ingestion: events/s per core of the ``root`` source, against a baseline.

The baseline is the practical limit of one Python process on the same files and branches:
``uproot.iterate`` → ``ak.to_arrow_table`` → ``pq.ParquetWriter.write_table`` (zstd). The
measured path is the convert job's ``convert_sample``, end to end: list and stat the inputs,
plan the read with the ``root`` source's metadata scan on the driver, one Spark task per file or
entry range reading with the source's reader and writing zstd Parquet with pyarrow, count check,
manifest. For comparison, three more columns: the baseline with the convert job's Parquet
writer settings (``sparkhep.convert.dictionary_columns``: no dictionary for floating-point
columns), the previous path, ``read_root`` → ``write_events`` (rows through the JVM, Parquet
written by Spark), and the read alone (``read_root`` into Spark's ``noop`` sink). Spark runs as
``local[<cores>]``; its events/s are divided by the cores. Each path runs ``--repeat`` times per
dataset, interleaved, and the fastest run counts (a shared machine only ever slows runs down).

Datasets: the Pythia NanoAOD-like files and the ~950-branch CMS NanoAOD file of
``../shared/data`` (small files: fixed costs weigh), and a SYNTHETIC file from
``sparkhep.generate`` listed 1, 4 and 16 times (cost must be linear in events). The ratio
column (against pyarrow's default writer settings, as the issue defines the baseline) is the
number to quote; the ratio to the baseline with the same writer settings says how much of it
the writer settings give.

    .venv/bin/python benchmarks/ingest.py [--events 100000] [--cores 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_CANDIDATES = (REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data")
MULTIPLES = (1, 4, 16)
STEP_BYTES = 32 * 1000**2
"""Uncompressed bytes per baseline chunk: the same as the source's record batches."""


@dataclass(frozen=True)
class Measurement:
    """One dataset read and written by both paths."""

    name: str
    files: int
    events: int
    baseline_seconds: float
    same_writer_seconds: float
    spark_seconds: float
    spark_writer_seconds: float
    spark_read_seconds: float
    cores: int

    @property
    def baseline_rate(self) -> float:
        """Baseline events/s (one process, one core)."""
        return self.events / self.baseline_seconds

    @property
    def same_writer_rate(self) -> float:
        """Baseline events/s with the convert job's writer settings (``dictionary_columns``)."""
        return self.events / self.same_writer_seconds

    @property
    def spark_rate_per_core(self) -> float:
        """Spark events/s divided by its cores."""
        return self.events / self.spark_seconds / self.cores

    @property
    def spark_writer_rate_per_core(self) -> float:
        """Spark events/s per core when Spark's own writer writes the rows (the former path)."""
        return self.events / self.spark_writer_seconds / self.cores

    @property
    def read_rate_per_core(self) -> float:
        """Spark events/s per core when the rows go to the ``noop`` sink (no Parquet)."""
        return self.events / self.spark_read_seconds / self.cores

    @property
    def ratio(self) -> float:
        """Per-core Spark rate over the baseline rate (the goal is ≥ 0.7)."""
        return self.spark_rate_per_core / self.baseline_rate


def baseline(
    paths: Sequence[str],
    branches: Sequence[str] | None,
    output: Path,
    *,
    same_writer: bool = False,
) -> int:
    """One process: uproot.iterate → pyarrow → one zstd Parquet file per input file.

    With ``same_writer``, the Parquet writer gets the convert job's settings (no dictionary for
    floating-point columns) instead of pyarrow's defaults.
    """
    import awkward as ak
    import pyarrow.parquet as pq
    import uproot
    from sparkhep.convert import dictionary_columns

    events = 0
    for index, path in enumerate(paths):
        writer = None
        for arrays in uproot.iterate(
            f"{path}:Events", branches, step_size=STEP_BYTES, library="ak"
        ):
            table = ak.to_arrow_table(arrays, extensionarray=False)
            if writer is None:
                settings = (
                    {"use_dictionary": dictionary_columns(table.schema)} if same_writer else {}
                )
                writer = pq.ParquetWriter(
                    output / f"part-{index}.parquet", table.schema, compression="zstd", **settings
                )
            writer.write_table(table)
            events += len(arrays)
        if writer is not None:
            writer.close()
    return events


def through_convert(
    spark, paths: Sequence[str], branches: Sequence[str] | None, output: Path
) -> int:
    """The convert job on one sample: ``convert_sample`` into ``output`` (rows written)."""
    from sparkhep.config import SampleConfig
    from sparkhep.convert import ConvertOptions, convert_sample

    sample = SampleConfig(name=output.name, paths=tuple(paths), label=1)
    options = ConvertOptions(branches=tuple(branches) if branches is not None else None)
    result = convert_sample(
        spark, sample, output=str(output), temporary=str(output), options=options
    )
    return result.rows


def through_spark_writer(
    spark, paths: Sequence[str], branches: Sequence[str] | None, output: Path
) -> None:
    """The former convert path: ``read_root`` → ``write_events`` (Spark's Parquet writer)."""
    from sparkhep.convert import write_events
    from sparkhep.root import read_root

    write_events(read_root(spark, list(paths), branches=branches), output=str(output))


def read_only(spark, paths: Sequence[str], branches: Sequence[str] | None) -> None:
    """The read alone: rows into Spark's ``noop`` sink, to tell reading from Parquet writing."""
    from sparkhep.root import read_root

    read_root(spark, list(paths), branches=branches).write.format("noop").mode("overwrite").save()


def measure(
    spark,
    name: str,
    paths: Sequence[str],
    branches: Sequence[str] | None,
    cores: int,
    scratch: Path,
    repeat: int,
) -> Measurement:
    """Time every path on the same files and branches: the fastest of ``repeat`` runs each."""
    seconds: dict[str, list[float]] = {}

    def timed(label: str, run: Callable[[Path], int | None]) -> int | None:
        directory = scratch / f"{name}-{label}"
        if label in ("baseline", "same-writer"):  # the Spark paths create theirs
            directory.mkdir()
        start = time.perf_counter()
        result = run(directory)
        seconds.setdefault(label, []).append(time.perf_counter() - start)
        if label in ("convert", "spark-writer"):
            written = spark.read.parquet(str(directory)).count()
            if written != events:
                raise SystemExit(
                    f"{name}: {label} wrote {written} rows, the baseline read {events}"
                )
        shutil.rmtree(directory, ignore_errors=True)
        return result

    for _ in range(repeat):
        events = timed("baseline", lambda d: baseline(paths, branches, d))
        timed("same-writer", lambda d: baseline(paths, branches, d, same_writer=True))
        rows = timed("convert", lambda d: through_convert(spark, paths, branches, d))
        if rows != events:
            raise SystemExit(f"{name}: convert reported {rows} rows, the baseline read {events}")
        timed("spark-writer", lambda d: through_spark_writer(spark, paths, branches, d))
        timed("read", lambda d: read_only(spark, paths, branches))
    best = {label: min(values) for label, values in seconds.items()}
    return Measurement(
        name,
        len(paths),
        events,
        best["baseline"],
        best["same-writer"],
        best["convert"],
        best["spark-writer"],
        best["read"],
        cores,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events of the 1x file")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="Spark cores")
    parser.add_argument("--shared", type=Path, help="the shared data (default ../shared/data)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each path per dataset (the fastest counts)"
    )
    args = parser.parse_args(argv)
    if args.shared is None and not any((p / "pythia").is_dir() for p in SHARED_CANDIDATES):
        parser.error("../shared/data (the real ROOT files) not found; pass --shared")
    logging.basicConfig(level=logging.WARNING)

    from sparkhep.generate import write_sample
    from sparkhep.session import build_session

    scratch = Path(tempfile.mkdtemp(prefix="sparkhep-ingest-"))
    spark = build_session(
        app_name="sparkhep-bench-ingest",
        overrides={"spark.master": f"local[{args.cores}]", "spark.ui.enabled": "false"},
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        generated = write_sample(
            scratch / "generated", kind="signal", n_events=args.events, seed=7
        )[0]
        shared = args.shared or next(p for p in SHARED_CANDIDATES if (p / "pythia").is_dir())
        pythia = sorted(str(p) for p in (shared / "pythia").glob("*.root"))
        cms = str(shared / "cms" / "nanoAOD_2015_CMS_Open_Data_ttbar.root")
        # Warm-up, not measured: one task per core, so every Python worker starts and imports.
        measure(spark, "warmup", pythia[: 2 * args.cores], None, args.cores, scratch, 1)
        runs = [("pythia (8 files, all 18 branches)", pythia)]
        if os.path.exists(cms):
            runs.append(("CMS NanoAOD (947 branches) x1", [cms]))
            runs.append(("CMS NanoAOD (947 branches) x16", [cms] * 16))
        runs += [
            (f"generated {args.events} events x{multiple}", [str(generated)] * multiple)
            for multiple in MULTIPLES
        ]
        print(
            f"| data | files | events | baseline ev/s (1 core) | convert ev/s per core "
            f"(local[{args.cores}]) | ratio | baseline with convert's writer settings ev/s "
            f"(convert's ratio to it) | Spark's writer ev/s per core (ratio) "
            f"| read only ev/s per core (ratio) |\n" + "|---" * 9 + "|"
        )
        results = []
        for name, paths in runs:
            result = measure(
                spark, f"run{len(results)}", paths, None, args.cores, scratch, args.repeat
            )
            results.append(result)
            print(
                f"| {name} | {result.files} | {result.events} | {result.baseline_rate:,.0f} "
                f"| {result.spark_rate_per_core:,.0f} | {result.ratio:.2f} "
                f"| {result.same_writer_rate:,.0f} "
                f"({result.spark_rate_per_core / result.same_writer_rate:.2f}) "
                f"| {result.spark_writer_rate_per_core:,.0f} "
                f"({result.spark_writer_rate_per_core / result.baseline_rate:.2f}) "
                f"| {result.read_rate_per_core:,.0f} "
                f"({result.read_rate_per_core / result.baseline_rate:.2f}) |",
                flush=True,
            )
        linear = results[-len(MULTIPLES) :]  # the generated file, listed 1, 4, 16 times
        one = linear[0]
        print("\nlinearity (seconds per event relative to x1):")
        for r, multiple in zip(linear, MULTIPLES, strict=True):
            per_event_baseline = r.baseline_seconds / multiple / one.baseline_seconds
            per_event_spark = r.spark_seconds / multiple / one.spark_seconds
            print(
                f"  x{multiple}: baseline {per_event_baseline:.2f}, convert {per_event_spark:.2f}"
            )
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
