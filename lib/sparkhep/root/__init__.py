"""ROOT files into Spark: the ``root`` Python Data Source over uproot, and ``read_root``.

``spark.read.format("root")`` is registered by ``sparkhep.register(spark)`` (which
``sparkhep.session.build_session`` calls). Each Spark partition is one entry range of one
file (TTree or RNTuple), read by uproot into Arrow record batches; jagged branches become
``array<...>`` columns and counters such as ``nJet`` stay columns. The options are described
in ``sparkhep.root.source``. Importing this package pulls in neither pyspark nor uproot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["read_root", "root_source_options"]


def read_root(
    spark: SparkSession,
    paths: str | Sequence[str],
    *,
    tree: str = "Events",
    branches: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    entry_step: int | str | None = None,
    cut: str | None = None,
    aliases: Mapping[str, str] | None = None,
    recursive: bool = False,
    on_bad_file: str = "fail",
    uint64_as_decimal: bool = False,
    source: str = "root",
) -> DataFrame:
    """Read TTrees or RNTuples from ROOT files into a DataFrame with ``spark.read.format("root")``.

    Local glob patterns (also in ``file://`` URLs) and ``root://``/``hdfs://`` patterns are
    expanded here on the driver, and a local directory stands for the ``*.root`` files in it,
    so that a pattern matching nothing fails at once with ``FileNotFoundError``.

    Args:
        spark: a session with the ``root`` source registered (``sparkhep.register``).
        paths: files, ``file://`` URLs, glob patterns, directories or URLs.
        tree: the TTree or RNTuple to read.
        branches: branch names or glob patterns, in column order; None for every branch.
            Spark does not prune columns of a Python data source: name what you need here.
        exclude: glob patterns of branches to leave out.
        entry_step: entries per Spark partition, or a size such as ``"64 MB"`` of the selected
            branches per partition; None for the source's default (``"128 MB"``).
        cut: keep the entries for which this expression is true (applied while reading).
        aliases: new column name → expression over branches.
        recursive: list directories recursively.
        on_bad_file: ``"fail"`` or ``"skip"`` (leave unreadable files out, with a warning).
        uint64_as_decimal: read uint64 branches as ``decimal(20,0)`` instead of bigint.
        source: the registered format name to read with.

    Returns:
        The lazy DataFrame, one row per entry (passing the cut), one column per branch, then
        one per alias.

    Raises:
        FileNotFoundError: a pattern matches no file or a local path does not exist.
        ValueError: ``branches`` is empty or ``entry_step`` is not positive.
    """
    from sparkhep.root.paths import expand_paths

    patterns = [paths] if isinstance(paths, str) else list(paths)
    if not patterns:
        raise ValueError(f"expected one or more ROOT file paths, got {paths!r}")
    options = root_source_options(
        tree=tree,
        branches=branches,
        exclude=exclude,
        entry_step=entry_step,
        cut=cut,
        aliases=aliases,
        recursive=recursive,
        on_bad_file=on_bad_file,
        uint64_as_decimal=uint64_as_decimal,
    )
    return (
        spark.read.format(source)
        .options(**options)
        .load(expand_paths(patterns, recursive=recursive))
    )


def root_source_options(
    *,
    tree: str = "Events",
    branches: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    entry_step: int | str | None = None,
    cut: str | None = None,
    aliases: Mapping[str, str] | None = None,
    recursive: bool = False,
    on_bad_file: str = "fail",
    uint64_as_decimal: bool = False,
) -> dict[str, str]:
    """The string options of ``spark.read.format("root")`` for ``read_root``'s arguments.

    The convert job hands the same options (plus ``paths``) to the data source's own planner
    in the driver, so both read exactly alike. Arguments as for ``read_root``.

    Returns:
        Option name → value, every value a string as Spark passes it.

    Raises:
        ValueError: ``branches`` is empty or ``entry_step`` is not positive.
    """
    import json

    options: dict[str, str] = {
        "tree": tree,
        "on_bad_file": on_bad_file,
        "recursive": str(recursive).lower(),
        "uint64_as_decimal": str(uint64_as_decimal).lower(),
    }
    if branches is not None:
        if isinstance(branches, str) or not branches:
            raise ValueError(
                f"expected branches as a non-empty sequence of names or patterns, got {branches!r}"
            )
        options["branches"] = ",".join(branches)
    if exclude:
        if isinstance(exclude, str):
            raise ValueError(f"expected exclude as a sequence of patterns, got {exclude!r}")
        options["exclude"] = ",".join(exclude)
    if entry_step is not None:
        if isinstance(entry_step, int) and entry_step <= 0:
            raise ValueError(f"expected a positive entry_step, got {entry_step!r}")
        options["entry_step"] = str(entry_step)
    if cut is not None:
        options["cut"] = cut
    if aliases:
        options["aliases"] = json.dumps(dict(aliases))
    return options
