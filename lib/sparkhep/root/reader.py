"""The uproot side of the ``root`` data source: metadata on the driver, events on executors.

``infer_schema`` and ``plan_partitions`` run in Spark's planner workers on the driver and open
files only for their metadata (keys, entry counts, branch types), so that a missing file, a
file that is not ROOT, a truncated copy, a missing tree or branch all fail before any task
starts. ``read_partition`` runs in the executors and turns entry ranges into Arrow record
batches.
"""

from __future__ import annotations

import difflib
import fnmatch
import glob
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import uproot
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import DataType, StructField, StructType

from sparkhep.root.arrow import UnsignedOverflowError, layout_to_arrow
from sparkhep.root.paths import expand_paths, is_local, local_path
from sparkhep.root.schema import spark_type_for_branch

log = logging.getLogger(__name__)

ROOT_MAGIC = b"root"
BATCH_BYTES = "100 MB"
"""Uncompressed size of the branches read into one Arrow record batch (uproot step_size)."""
METADATA_THREADS = 8
LISTED_NAMES = 20


def infer_schema(
    paths: Sequence[str], *, tree: str, branches: Sequence[str] | None = None
) -> StructType:
    """The Spark schema of the selected branches of the first file.

    Args:
        paths: files, URLs or glob patterns; the first file found decides the schema.
        tree: the TTree name.
        branches: branch names or glob patterns; None for every branch.

    Returns:
        One nullable field per branch: names in the order requested (tree order for glob
        patterns and for all branches). Branches of unsupported types are skipped with a
        warning when they come from a pattern or from "all branches".

    Raises:
        FileNotFoundError: a local path or pattern matches no file.
        ValueError: a file is not a readable ROOT file, the tree or a branch is missing.
        TypeError: branches requested by name have types with no Spark column type.
    """
    path = expand_paths(paths)[0]
    with open_tree(path, tree) as ttree:
        names, explicit = select_branches(ttree, branches, path=path, tree=tree)
        types = {name: spark_type_for_branch(ttree[name]) for name in names}
        typenames = {name: ttree[name].typename for name in names if types[name] is None}
    unsupported = [name for name in names if types[name] is None]
    requested = [name for name in unsupported if name in explicit]
    if requested:
        listed = ", ".join(f"{name!r} ({typenames[name]})" for name in requested)
        raise TypeError(
            f"branches of tree {tree!r} in {path!r} have types with no Spark column type: "
            f"{listed}; expected numbers, booleans, strings or (jagged/fixed-size) arrays of them"
        )
    if unsupported:
        log.warning(
            "skipping %d branch(es) of tree %r in %r with unsupported types: %s",
            len(unsupported),
            tree,
            path,
            ", ".join(f"{name} ({typenames[name]})" for name in unsupported),
        )
    fields = [StructField(name, types[name]) for name in names if types[name] is not None]
    if not fields:
        raise ValueError(
            f"expected at least one readable branch in tree {tree!r} of {path!r}, got none "
            f"(selection {list(branches) if branches else 'all'!r})"
        )
    log.info("schema of tree %r from %r: %d columns", tree, path, len(fields))
    return StructType(fields)


def plan_partitions(
    paths: Sequence[str], *, tree: str, branches: Sequence[str], entry_step: int
) -> list[tuple[str, int, int]]:
    """Cut every file's entries into ranges of ``entry_step``, checking each file's metadata.

    Args:
        paths: files, URLs or glob patterns.
        tree: the TTree name.
        branches: the exact branch names every file must have, with the same types.
        entry_step: entries per range.

    Returns:
        ``(path, entry_start, entry_stop)`` for every range, file by file in the order given.

    Raises:
        FileNotFoundError: a local path or pattern matches no file.
        ValueError: a file is unreadable, lacks the tree or a branch, or a branch's type
            differs from the first file's.
    """
    files = expand_paths(paths)

    def metadata(path: str) -> tuple[int, dict[str, DataType | None]]:
        with open_tree(path, tree) as ttree:
            require_branches(ttree, branches, path=path, tree=tree)
            return ttree.num_entries, {
                name: spark_type_for_branch(ttree[name]) for name in branches
            }

    if len(files) == 1:
        found = [metadata(files[0])]
    else:
        with ThreadPoolExecutor(min(METADATA_THREADS, len(files))) as pool:
            found = list(pool.map(metadata, files))
    reference = found[0][1]
    ranges: list[tuple[str, int, int]] = []
    for path, (num_entries, types) in zip(files, found, strict=True):
        differing = [name for name in branches if types[name] != reference[name]]
        if differing:
            listed = "; ".join(
                f"{name!r} is {_type_name(types[name])} here but {_type_name(reference[name])} "
                f"in {files[0]!r}"
                for name in differing
            )
            raise ValueError(
                f"tree {tree!r} in {path!r}: expected the branch types of the first file, "
                f"got {listed}"
            )
        ranges.extend(
            (path, start, min(start + entry_step, num_entries))
            for start in range(0, num_entries, entry_step)
        )
    log.info(
        "tree %r: %d partitions over %d file(s), %d entries",
        tree,
        len(ranges),
        len(files),
        sum(num_entries for num_entries, _ in found),
    )
    return ranges


def read_partition(
    path: str, *, tree: str, schema: StructType, entry_start: int, entry_stop: int
) -> Iterator[pa.RecordBatch]:
    """Read entries ``[entry_start, entry_stop)`` of the branches named by ``schema``.

    Args:
        path: the file.
        tree: the TTree name.
        schema: the columns to produce (field names are branch names).
        entry_start: the first entry.
        entry_stop: one past the last entry.

    Returns:
        Record batches of about ``BATCH_BYTES`` each, with exactly the Arrow form of
        ``schema`` (what Spark's ``to_arrow_schema`` gives).

    Raises:
        OverflowError: a uint64 branch holds a value of 2**63 or more.
        OSError: uproot cannot read the entries.
    """
    arrow_schema = to_arrow_schema(schema)
    names = schema.fieldNames()
    with open_tree(path, tree) as ttree:
        require_branches(ttree, names, path=path, tree=tree)
        chunks = ttree.iterate(
            names,
            entry_start=entry_start,
            entry_stop=entry_stop,
            step_size=BATCH_BYTES,
            library="ak",
            how=dict,
            report=True,
        )
        while True:
            try:
                arrays, report = next(chunks)
            except StopIteration:
                return
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise OSError(
                    f"cannot read entries [{entry_start}, {entry_stop}) of tree {tree!r} in "
                    f"{path!r}: {err}"
                ) from err
            columns = []
            for field in arrow_schema:
                try:
                    columns.append(layout_to_arrow(arrays[field.name].layout, field.type))
                except UnsignedOverflowError as err:
                    entry = report.tree_entry_start + err.row
                    raise OverflowError(
                        f"branch {field.name!r} of tree {tree!r} in {path!r}: entry {entry} "
                        f"holds {err.value}, expected a value below 2**63 to fit the signed "
                        f"bigint column (uint64 is never wrapped silently)"
                    ) from None
                except TypeError as err:
                    raise TypeError(
                        f"branch {field.name!r} of tree {tree!r} in {path!r}: {err}"
                    ) from err
            yield pa.RecordBatch.from_arrays(columns, schema=arrow_schema)


@contextmanager
def open_tree(path: str, tree: str) -> Iterator[Any]:
    """Open a ROOT file and its TTree, with errors that name the file and what was expected.

    Args:
        path: a local path, ``file://`` URL or any URL uproot can open.
        tree: the TTree name (or path inside the file).

    Returns:
        A context manager yielding the ``uproot.TTree``; the file closes on exit.

    Raises:
        FileNotFoundError: the local file does not exist.
        ValueError: the file is not ROOT, is truncated, or lacks the tree.
    """
    location = path
    if is_local(path):
        location = local_path(path)
        _check_magic(location, path)
    try:
        file = uproot.open(location)
    except FileNotFoundError:
        raise
    except Exception as err:  # uproot and fsspec raise OSError, ValueError and more
        raise ValueError(f"cannot open {path!r} as a ROOT file: {err}") from err
    with file:
        _check_complete(file, path)
        yield _tree_in(file, tree, path)


def select_branches(
    ttree: Any, patterns: Sequence[str] | None, *, path: str, tree: str
) -> tuple[list[str], set[str]]:
    """Resolve branch names and glob patterns against a tree.

    Args:
        ttree: the ``uproot.TTree``.
        patterns: names or glob patterns (``*``, ``?``, ``[...]``); None for every leaf branch.
        path: the file, for error messages.
        tree: the tree name, for error messages.

    Returns:
        The branch names (requested order; tree order within a pattern; no duplicates) and
        the subset that was asked for by exact name.

    Raises:
        ValueError: a name does not exist or a pattern matches nothing (with the closest names).
    """
    if patterns is None:
        return ttree.keys(filter_branch=lambda branch: not branch.branches), set()
    available = ttree.keys()
    names: list[str] = []
    explicit: set[str] = set()
    missing: list[str] = []
    for pattern in patterns:
        if pattern in available:
            names.append(pattern)
            explicit.add(pattern)
        elif glob.has_magic(pattern):
            matched = [name for name in available if fnmatch.fnmatchcase(name, pattern)]
            if not matched:
                missing.append(pattern)
            names.extend(matched)
        else:
            missing.append(pattern)
    if missing:
        raise ValueError(_missing_branches_message(missing, available, path=path, tree=tree))
    return list(dict.fromkeys(names)), explicit


def require_branches(ttree: Any, names: Sequence[str], *, path: str, tree: str) -> None:
    """Check that a tree has every named branch.

    Args:
        ttree: the ``uproot.TTree``.
        names: exact branch names.
        path: the file, for error messages.
        tree: the tree name, for error messages.

    Raises:
        ValueError: some branches are missing (with the closest names of each).
    """
    available = ttree.keys()
    known = set(available)
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(_missing_branches_message(missing, available, path=path, tree=tree))


def _missing_branches_message(
    missing: Sequence[str], available: Sequence[str], *, path: str, tree: str
) -> str:
    problems = []
    for name in missing:
        close = difflib.get_close_matches(name, available, n=5, cutoff=0.6)
        what = f"no branch matches {name!r}" if glob.has_magic(name) else f"no branch {name!r}"
        problems.append(f"{what} (closest: {', '.join(map(repr, close)) or 'none'})")
    return (
        f"tree {tree!r} in {path!r} lacks requested branches: {'; '.join(problems)}; "
        f"expected names or glob patterns of its {len(available)} branches (option 'branches')"
    )


def _check_magic(location: str, path: str) -> None:
    if not os.path.exists(location):
        raise FileNotFoundError(f"ROOT file {path!r} does not exist")
    with open(location, "rb") as handle:
        head = handle.read(len(ROOT_MAGIC))
    if head != ROOT_MAGIC:
        raise ValueError(
            f"{path!r} is not a ROOT file: expected it to start with {ROOT_MAGIC!r}, got {head!r}"
        )


def _check_complete(file: Any, path: str) -> None:
    expected = file.file.fEND
    try:
        actual = file.file.source.num_bytes
    except Exception:  # a remote source may not know its size
        return
    if actual is not None and actual < expected:
        raise ValueError(
            f"ROOT file {path!r} is truncated: its header says {expected} bytes, "
            f"got {actual} (an incomplete copy or download?)"
        )


def _tree_in(file: Any, tree: str, path: str) -> Any:
    try:
        found = file[tree]
    except KeyError:
        classnames = file.classnames(cycle=False)
        close = difflib.get_close_matches(tree, list(classnames), n=3, cutoff=0.5)
        holds = ", ".join(
            f"{name!r} ({classname})" for name, classname in list(classnames.items())[:LISTED_NAMES]
        )
        more = (
            f" and {len(classnames) - LISTED_NAMES} more" if len(classnames) > LISTED_NAMES else ""
        )
        hint = f"closest: {', '.join(map(repr, close))}; " if close else ""
        raise ValueError(
            f"ROOT file {path!r} has no tree {tree!r} (option 'tree'); {hint}"
            f"the file holds: {holds or 'nothing'}{more}"
        ) from None
    except Exception as err:  # a damaged directory or TTree header
        raise ValueError(f"cannot read tree {tree!r} from ROOT file {path!r}: {err}") from err
    if not isinstance(found, uproot.behaviors.TTree.TTree):
        raise ValueError(f"{tree!r} in ROOT file {path!r} is a {found.classname}, expected a TTree")
    return found


def _type_name(spark_type: DataType | None) -> str:
    return "unsupported" if spark_type is None else spark_type.simpleString()
