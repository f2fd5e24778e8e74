"""The uproot side of the ``root`` data source: metadata on the driver, events on executors.

``scan_files`` runs in Spark's planner worker on the driver. It opens every file for its
metadata only (entry count, branch or field types, sizes), many at once in a thread pool so
that thousands of ``root://`` files are not opened one after another, and it decides the
schema: the first readable file's selected branches, each widened when another file holds it
with a wider type (int to bigint, float to double). A missing file, a file that is not ROOT, a
truncated copy, a missing tree or branch, or a type that cannot be widened is an error naming
the file (and, for types, both files), or with ``on_bad_file=skip`` a skipped file with the
reason. ``read_partition`` runs in the executors and turns an entry range into Arrow record
batches, applying ``cut`` and computing ``aliases`` on the way.

TTrees and RNTuples (the format of LHC Run 4) are read alike through ``EventsReader``.
"""

from __future__ import annotations

import difflib
import fnmatch
import glob
import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import uproot
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import DataType, StructField, StructType

from sparkhep.root.arrow import UnsignedOverflowError, layout_to_arrow
from sparkhep.root.expression import Expression, parse_expression
from sparkhep.root.paths import expand_paths, is_local, local_path
from sparkhep.root.schema import awkward_form_of_branch, spark_type_for_form, widen

if TYPE_CHECKING:
    from sparkhep.root.source import RootOptions

log = logging.getLogger(__name__)

ROOT_MAGIC = b"root"
BATCH_BYTES = 32 * 1000**2
"""Uncompressed size of the branches read into one Arrow record batch."""
METADATA_THREADS = 32
LISTED_NAMES = 20
LISTED_PROBLEMS = 5
RNTUPLE_COMPRESSION_GUESS = 4.0
"""RNTuples do not record uncompressed sizes per field: assume this compression ratio."""
XROOTD_HINT = (
    "reading root:// URLs needs the XRootD client in the Python of the Spark workers: "
    "pip install 'sparkhep[xrootd]' (the xrootd and fsspec-xrootd packages)"
)


@dataclass(frozen=True)
class PlannedFile:
    """A readable file: its entries and how many go in one partition.

    Attributes:
        path: absolute local path or URL.
        entries: entries of its tree.
        entry_step: entries per partition.
    """

    path: str
    entries: int
    entry_step: int


@dataclass(frozen=True)
class Scan:
    """What the driver learnt from every file's metadata.

    Attributes:
        schema: the columns (branches, then aliases).
        files: the readable files, in the order given.
        skipped: ``(path, reason)`` of files skipped with ``on_bad_file=skip``.
    """

    schema: StructType
    files: tuple[PlannedFile, ...]
    skipped: tuple[tuple[str, str], ...]


@dataclass
class PartitionStats:
    """What reading one partition did: the input of the convert job's count check.

    Attributes:
        entries: entries read from the file.
        passed: entries that passed the cut (all of them without a cut).
        rows: rows in the record batches produced.
    """

    entries: int = 0
    passed: int = 0
    rows: int = 0


@dataclass
class _FileFacts:
    path: str
    entries: int = 0
    names: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    explicit: set[str] = field(default_factory=set)
    unmatched: list[str] = field(default_factory=list)
    types: dict[str, DataType | None] = field(default_factory=dict)
    typenames: dict[str, str] = field(default_factory=dict)
    forms: dict[str, Any] = field(default_factory=dict)
    bytes_per_entry: float = 0.0
    problem: str | None = None


class BadFileError(ValueError):
    """A file that cannot be read as requested (what ``on_bad_file=skip`` skips)."""


# --- the driver: metadata ----------------------------------------------------------------------


def scan_files(options: RootOptions, *, columns: Sequence[str] | None = None) -> Scan:
    """Open every file for its metadata and decide the schema and the readable files.

    Args:
        options: the parsed options of the read.
        columns: the columns of a schema the user gave; None to infer the schema.

    Returns:
        The schema, the readable files and the skipped ones.

    Raises:
        FileNotFoundError: a local pattern matches no file.
        ValueError: a file is unreadable, lacks the tree or a branch, or a branch's type
            differs from the first file's and cannot be widened (``on_bad_file=fail``), or no
            file is readable; an expression refers to a missing branch or gives no column.
        TypeError: branches requested by name have types with no Spark column type.
        ImportError: ``root://`` URLs without the XRootD client.
    """
    files = expand_paths(options.paths, recursive=options.recursive)
    expressions = _expressions(options)
    wanted = options.branches
    if columns is not None:
        aliases = {name for name, _ in options.aliases}
        wanted = tuple(name for name in columns if name not in aliases)

    def facts(path: str) -> _FileFacts:
        try:
            return _file_facts(path, options, wanted, expressions)
        except (BadFileError, FileNotFoundError) as err:
            return _FileFacts(path=path, problem=str(err))

    start = time.perf_counter()
    if len(files) == 1:
        found = [facts(files[0])]
    else:
        with ThreadPoolExecutor(min(METADATA_THREADS, len(files))) as pool:
            found = list(pool.map(facts, files))
    # The reference is the first file that has every requested branch; a file before it that
    # lacks one is bad (skipped or the error), a file after it is compared with it below.
    for facts_of_file in found:
        if facts_of_file.problem is not None:
            continue
        if not facts_of_file.unmatched:
            break
        facts_of_file.problem = _missing_branches_message(
            facts_of_file.unmatched, facts_of_file.names, path=facts_of_file.path, tree=options.tree
        )
    reference = next((f for f in found if f.problem is None), None)
    if reference is None:
        listed = "; ".join(f.problem or "" for f in found[:LISTED_PROBLEMS])
        raise ValueError(
            f"expected at least one readable ROOT file with tree {options.tree!r}, "
            f"got none of {len(found)}: {listed}"
        )
    if options.on_bad_file == "fail":
        _raise_first_problem(found[: found.index(reference)])
    names = _reference_columns(reference, options)
    types = {name: reference.types[name] for name in names}
    for facts_of_file in found:
        if facts_of_file.problem is None and facts_of_file is not reference:
            facts_of_file.problem = _compare(facts_of_file, reference, names, types)
    problems = [f for f in found if f.problem is not None]
    if options.on_bad_file == "fail":
        _raise_first_problem(problems)
    for bad in problems:
        log.warning("skipping %s: %s", bad.path, bad.problem)
    fields = [StructField(name, types[name]) for name in names]
    fields += _alias_fields(reference, options, expressions, taken=set(names))
    good = [f for f in found if f.problem is None]
    planned = tuple(PlannedFile(f.path, f.entries, _entry_step(f, options)) for f in good)
    log.info(
        "tree %r: %d column(s) from %d readable file(s) (%d skipped), %d entries; metadata "
        "of %d file(s) in %.2f s",
        options.tree,
        len(fields),
        len(good),
        len(problems),
        sum(f.entries for f in good),
        len(found),
        time.perf_counter() - start,
    )
    return Scan(
        schema=StructType(fields),
        files=planned,
        skipped=tuple((f.path, f.problem or "") for f in problems),
    )


def plan_ranges(scan: Scan) -> list[tuple[str, int, int]]:
    """Cut every readable file's entries into ranges of its ``entry_step``.

    A file without entries gets one empty range, so that it is still accounted for.

    Args:
        scan: the result of ``scan_files``.

    Returns:
        ``(path, entry_start, entry_stop)``, file by file in the order given.
    """
    ranges: list[tuple[str, int, int]] = []
    for planned in scan.files:
        if planned.entries == 0:
            ranges.append((planned.path, 0, 0))
            continue
        ranges.extend(
            (planned.path, start, min(start + planned.entry_step, planned.entries))
            for start in range(0, planned.entries, planned.entry_step)
        )
    return ranges


def _expressions(options: RootOptions) -> dict[str, Expression]:
    parsed = {name: parse_expression(text, option="aliases") for name, text in options.aliases}
    if options.cut is not None:
        parsed[""] = parse_expression(options.cut, option="cut")
    return parsed


def _file_facts(
    path: str,
    options: RootOptions,
    wanted: Sequence[str] | None,
    expressions: dict[str, Expression],
) -> _FileFacts:
    with open_events(path, options.tree) as events:
        selected, explicit, unmatched = resolve_branches(events, wanted, exclude=options.exclude)
        needed = {name for e in expressions.values() for name in e.names}
        missing = sorted(needed - set(events.names))
        if missing:
            raise BadFileError(
                _missing_branches_message(
                    missing, events.names, path=path, tree=options.tree, option="cut/aliases"
                )
            )
        forms = events.forms([*selected, *sorted(needed - set(selected))])
        facts = _FileFacts(
            path=path,
            entries=events.num_entries,
            names=list(events.names),
            selected=selected,
            explicit=explicit,
            unmatched=unmatched,
            forms=forms,
            bytes_per_entry=events.bytes_per_entry([*selected, *needed]),
        )
        for name in selected:
            form = forms[name]
            facts.types[name] = (
                None
                if form is None
                else spark_type_for_form(form, uint64_as_decimal=options.uint64_as_decimal)
            )
            if facts.types[name] is None:
                facts.typenames[name] = events.typename(name)
    return facts


def _reference_columns(reference: _FileFacts, options: RootOptions) -> list[str]:
    unsupported = [name for name in reference.selected if reference.types[name] is None]
    requested = [name for name in unsupported if name in reference.explicit]
    if requested:
        listed = ", ".join(f"{name!r} ({reference.typenames[name]})" for name in requested)
        raise TypeError(
            f"branches of tree {options.tree!r} in {reference.path!r} have types with no Spark "
            f"column type: {listed}; expected numbers, booleans, strings or (jagged/fixed-size) "
            f"arrays of them"
        )
    if unsupported:
        log.warning(
            "skipping %d branch(es) of tree %r in %r with unsupported types: %s",
            len(unsupported),
            options.tree,
            reference.path,
            ", ".join(f"{name} ({reference.typenames[name]})" for name in unsupported),
        )
    names = [name for name in reference.selected if reference.types[name] is not None]
    if not names and not options.aliases:
        raise ValueError(
            f"expected at least one readable branch in tree {options.tree!r} of "
            f"{reference.path!r}, got none (selection "
            f"{list(options.branches) if options.branches else 'all'!r}, "
            f"exclude {list(options.exclude)!r})"
        )
    return names


def _compare(
    facts: _FileFacts, reference: _FileFacts, names: Sequence[str], types: dict[str, DataType]
) -> str | None:
    """Check a file against the reference columns, widening ``types`` in place."""
    known = set(facts.names)
    missing = [name for name in names if name not in known]
    if missing:
        return _missing_branches_message(
            missing, facts.names, path=facts.path, tree="", option="branches", present_in=reference
        )
    conflicts = []
    for name in names:
        theirs = facts.types.get(name)
        wider = None if theirs is None else widen(types[name], theirs)
        if wider is None:
            conflicts.append(
                f"branch {name!r} is {_type_name(theirs)} here but {_type_name(types[name])} in "
                f"{reference.path!r}"
            )
        else:
            types[name] = wider
    if conflicts:
        return (
            f"{facts.path!r}: expected branch types that can be widened to the first file's "
            f"(int to bigint, float to double), got {'; '.join(conflicts)}"
        )
    return None


def _alias_fields(
    reference: _FileFacts,
    options: RootOptions,
    expressions: dict[str, Expression],
    *,
    taken: set[str],
) -> list[StructField]:
    import awkward as ak

    empty = {
        name: ak.Array(form.length_zero_array())
        for name, form in reference.forms.items()
        if form is not None
    }
    fields = []
    for name, text in options.aliases:
        if name in taken:
            raise ValueError(
                f"option 'aliases': {name!r} is already a branch of tree {options.tree!r} in "
                f"{reference.path!r}; expected a new column name"
            )
        result = _evaluate_empty(expressions[name], empty, option="aliases", text=text)
        spark_type = spark_type_for_form(
            result.layout.form, uint64_as_decimal=options.uint64_as_decimal
        )
        if spark_type is None or result.ndim == 0:
            raise ValueError(
                f"option 'aliases': {name} = {text!r} gives {result.type}, which has no Spark "
                f"column type; expected numbers or booleans, one value or one list per entry"
            )
        fields.append(StructField(name, spark_type))
        taken.add(name)
    if options.cut is not None:
        result = _evaluate_empty(expressions[""], empty, option="cut", text=options.cut)
        if str(result.type.content) not in ("bool", "?bool"):
            raise ValueError(
                f"option 'cut': expected one boolean per entry, got {result.type.content} from "
                f"{options.cut!r} (reduce jagged branches with any(), all(), num() or sum(), "
                f"e.g. 'any(Jet_pt > 30)')"
            )
    return fields


def _evaluate_empty(expression: Expression, empty: dict[str, Any], *, option: str, text: str):
    import awkward as ak

    try:
        result = expression.evaluate(empty)
    except Exception as err:  # numpy/awkward raise many kinds for mismatched arguments
        raise ValueError(f"option {option!r}: cannot evaluate {text!r}: {err}") from err
    if not isinstance(result, ak.Array):
        result = ak.Array(np.asarray(result).reshape(-1)[:0])
    return result


def _entry_step(facts: _FileFacts, options: RootOptions) -> int:
    if options.entry_step is not None:
        return options.entry_step
    return max(1, int(options.partition_bytes // max(facts.bytes_per_entry, 1.0)))


def _raise_first_problem(problems: Sequence[_FileFacts]) -> None:
    if not problems:
        return
    more = len(problems) - 1
    suffix = (
        f" (and {more} more file(s) with problems; option on_bad_file='skip' skips them)"
        if more
        else ""
    )
    raise ValueError(f"{problems[0].problem}{suffix}")


# --- opening files -----------------------------------------------------------------------------


class EventsReader:
    """A TTree or an RNTuple, behind the few operations the source needs.

    Attributes:
        kind: ``"TTree"`` or ``"RNTuple"``.
        names: the branch (TTree, all levels) or top-level field (RNTuple) names.
        leaves: the names read when no branches are requested.
        num_entries: the number of entries.
    """

    def __init__(self, found: Any, path: str) -> None:
        self._found = found
        self._path = path
        self.kind = "TTree" if isinstance(found, uproot.behaviors.TTree.TTree) else "RNTuple"
        if self.kind == "TTree":
            self.names = list(found.keys())
            self.leaves = found.keys(filter_branch=lambda branch: not branch.branches)
        else:
            self.names = list(found.keys(recursive=False))
            self.leaves = self.names
        self.num_entries = int(found.num_entries)

    def typename(self, name: str) -> str:
        """The C++ type of a branch or field."""
        return str(self._found[name].typename)

    def forms(self, names: Sequence[str]) -> dict[str, Any]:
        """Awkward forms of the named branches or fields (None where uproot has none)."""
        if self.kind == "TTree":
            return {name: awkward_form_of_branch(self._found[name]) for name in names}
        if not names:
            return {}
        record, _ = self._found.to_akform(filter_name=list(names))
        return {name: record.content(name) for name in names}

    def bytes_per_entry(self, names: Sequence[str]) -> float:
        """Uncompressed bytes per entry of the named branches (an estimate for RNTuples)."""
        if not self.num_entries:
            return 0.0
        if self.kind == "TTree":
            total = sum(self._found[name].uncompressed_bytes for name in set(names))
            return total / self.num_entries
        share = len(set(names)) / max(len(self.names), 1)
        size = self._found.file.source.num_bytes or 0
        return size * RNTUPLE_COMPRESSION_GUESS * share / self.num_entries

    def iterate(
        self, names: Sequence[str], *, entry_start: int, entry_stop: int, step_bytes: int
    ) -> Iterator[tuple[dict[str, Any], int]]:
        """Yield ``(branch → awkward array, first entry)`` over ``[entry_start, entry_stop)``."""
        if self.kind == "TTree":
            chunks = self._found.iterate(
                list(names),
                entry_start=entry_start,
                entry_stop=entry_stop,
                step_size=step_bytes,
                library="ak",
                how=dict,
                report=True,
            )
            for arrays, report in chunks:
                yield arrays, int(report.tree_entry_start)
            return
        per_entry = max(self.bytes_per_entry(names), 1.0)
        step = max(1, int(step_bytes // per_entry))
        for start in range(entry_start, entry_stop, step):
            stop = min(start + step, entry_stop)
            arrays = self._found.arrays(list(names), entry_start=start, entry_stop=stop)
            yield {name: arrays[name] for name in names}, start


@contextmanager
def open_events(path: str, tree: str) -> Iterator[EventsReader]:
    """Open a ROOT file and its TTree or RNTuple, with errors that name the file.

    Args:
        path: a local path, ``file://`` URL or any URL uproot can open.
        tree: the TTree or RNTuple name (or path inside the file).

    Returns:
        A context manager yielding the ``EventsReader``; the file closes on exit.

    Raises:
        FileNotFoundError: the local file does not exist.
        BadFileError: the file is not ROOT, is truncated, or lacks the tree.
        ImportError: a ``root://`` URL without the XRootD client.
    """
    location = path
    if is_local(path):
        location = local_path(path)
        _check_magic(location, path)
    try:
        file = uproot.open(location)
    except FileNotFoundError:
        raise
    except ImportError as err:
        raise ImportError(f"cannot open {path!r}: {XROOTD_HINT}") from err
    except Exception as err:  # uproot and fsspec raise OSError, ValueError and more
        if path.lower().startswith("root:") and "protocol" in str(err).lower():
            raise ImportError(f"cannot open {path!r}: {XROOTD_HINT}") from err
        raise BadFileError(f"cannot open {path!r} as a ROOT file: {err}") from err
    with file:
        _check_complete(file, path)
        yield EventsReader(_tree_in(file, tree, path), path)


def select_branches(
    events: EventsReader,
    patterns: Sequence[str] | None,
    *,
    exclude: Sequence[str] = (),
    path: str,
    tree: str,
) -> tuple[list[str], set[str]]:
    """Resolve branch names and glob patterns against a tree, less the excluded ones.

    Args:
        events: the opened tree or RNTuple.
        patterns: names or glob patterns (``*``, ``?``, ``[...]``); None for every leaf branch.
        exclude: glob patterns of branches to leave out.
        path: the file, for error messages.
        tree: the tree name, for error messages.

    Returns:
        The branch names (requested order; tree order within a pattern; no duplicates) and
        the subset that was asked for by exact name.

    Raises:
        BadFileError: a name does not exist or a pattern matches nothing (with the closest names).
    """
    names, explicit, unmatched = resolve_branches(events, patterns, exclude=exclude)
    if unmatched:
        raise BadFileError(_missing_branches_message(unmatched, events.names, path=path, tree=tree))
    return names, explicit


def resolve_branches(
    events: EventsReader, patterns: Sequence[str] | None, *, exclude: Sequence[str] = ()
) -> tuple[list[str], set[str], list[str]]:
    """Like ``select_branches``, but return the names and patterns that matched nothing."""
    available = events.names
    names: list[str] = []
    explicit: set[str] = set()
    unmatched: list[str] = []
    if patterns is None:
        names = list(events.leaves)
    else:
        for pattern in patterns:
            if pattern in available:
                names.append(pattern)
                explicit.add(pattern)
            elif glob.has_magic(pattern):
                matched = [name for name in available if fnmatch.fnmatchcase(name, pattern)]
                if not matched:
                    unmatched.append(pattern)
                names.extend(matched)
            else:
                unmatched.append(pattern)
    if exclude:
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
    return list(dict.fromkeys(names)), explicit, unmatched


def _missing_branches_message(
    missing: Sequence[str],
    available: Sequence[str],
    *,
    path: str,
    tree: str,
    option: str = "branches",
    present_in: _FileFacts | None = None,
) -> str:
    problems = []
    for name in missing:
        close = difflib.get_close_matches(name, available, n=5, cutoff=0.6)
        what = f"no branch matches {name!r}" if glob.has_magic(name) else f"no branch {name!r}"
        problems.append(f"{what} (closest: {', '.join(map(repr, close)) or 'none'})")
    where = f"tree {tree!r} in {path!r}" if tree else f"{path!r}"
    if present_in is not None:
        return (
            f"{where} lacks branches that the first file {present_in.path!r} has: "
            f"{'; '.join(problems)}"
        )
    return (
        f"{where} lacks requested branches: {'; '.join(problems)}; expected names or glob "
        f"patterns of its {len(available)} branches (option {option!r})"
    )


def _check_magic(location: str, path: str) -> None:
    if not os.path.exists(location):
        raise FileNotFoundError(f"ROOT file {path!r} does not exist")
    with open(location, "rb") as handle:
        head = handle.read(len(ROOT_MAGIC))
    if head != ROOT_MAGIC:
        raise BadFileError(
            f"{path!r} is not a ROOT file: expected it to start with {ROOT_MAGIC!r}, got {head!r}"
        )


def _check_complete(file: Any, path: str) -> None:
    expected = file.file.fEND
    try:
        actual = file.file.source.num_bytes
    except Exception:  # a remote source may not know its size
        return
    if actual is not None and actual < expected:
        raise BadFileError(
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
        raise BadFileError(
            f"ROOT file {path!r} has no tree {tree!r} (option 'tree'); {hint}"
            f"the file holds: {holds or 'nothing'}{more}"
        ) from None
    except Exception as err:  # a damaged directory or TTree header
        raise BadFileError(f"cannot read tree {tree!r} from ROOT file {path!r}: {err}") from err
    rntuple = uproot.models.RNTuple.Model_ROOT_3a3a_RNTuple
    if not isinstance(found, uproot.behaviors.TTree.TTree | rntuple):
        raise BadFileError(
            f"{tree!r} in ROOT file {path!r} is a {found.classname}, expected a TTree or an "
            f"RNTuple (option 'tree')"
        )
    return found


def _type_name(spark_type: DataType | None) -> str:
    return "unsupported" if spark_type is None else spark_type.simpleString()


# --- the executors: events -----------------------------------------------------------------------


def read_partition(
    path: str,
    *,
    options: RootOptions,
    schema: StructType,
    entry_start: int,
    entry_stop: int,
    stats: PartitionStats | None = None,
) -> Iterator[pa.RecordBatch]:
    """Read entries ``[entry_start, entry_stop)``: the schema's branches, aliases, the cut.

    Args:
        path: the file.
        options: the parsed options of the read (tree, cut, aliases).
        schema: the columns to produce (branch names, then alias names).
        entry_start: the first entry.
        entry_stop: one past the last entry.
        stats: filled in while reading (entries read, passing the cut, rows produced).

    Returns:
        Record batches of about ``BATCH_BYTES`` (before the cut) each, with exactly the Arrow
        form of ``schema`` (what Spark's ``to_arrow_schema`` gives).

    Raises:
        OverflowError: a uint64 branch holds a value of 2**63 or more (not a decimal column).
        BadFileError: the file or its entries cannot be read.
        FileNotFoundError: the file is gone.
    """
    stats = stats if stats is not None else PartitionStats()
    arrow_schema = to_arrow_schema(schema)
    expressions = _expressions(options)
    alias_names = {name for name, _ in options.aliases}
    branch_columns = [name for name in schema.fieldNames() if name not in alias_names]
    needed = {name for e in expressions.values() for name in e.names}
    to_read = [*branch_columns, *sorted(needed - set(branch_columns))]
    if entry_stop <= entry_start:
        return
    with open_events(path, options.tree) as events:
        known = set(events.names)
        absent = [name for name in to_read if name not in known]
        if absent:
            raise BadFileError(
                _missing_branches_message(absent, events.names, path=path, tree=options.tree)
            )
        chunks = events.iterate(
            to_read, entry_start=entry_start, entry_stop=entry_stop, step_bytes=BATCH_BYTES
        )
        while True:
            try:
                arrays, first = next(chunks)
            except StopIteration:
                return
            except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
                raise BadFileError(
                    f"cannot read entries [{entry_start}, {entry_stop}) of tree "
                    f"{options.tree!r} in {path!r}: {err}"
                ) from err
            length = len(arrays[to_read[0]]) if to_read else 0
            stats.entries += length
            for name, _ in options.aliases:
                arrays[name] = expressions[name].evaluate(arrays)
            if options.cut is not None:
                mask = _cut_mask(expressions[""].evaluate(arrays), length)
                passed = int(mask.sum())
                if passed != length:
                    arrays = {name: arrays[name][mask] for name in schema.fieldNames()}
                    rows_of_entries = np.flatnonzero(mask)
                else:
                    rows_of_entries = None
            else:
                passed, rows_of_entries = length, None
            stats.passed += passed
            batch = _to_batch(
                arrays,
                arrow_schema,
                path=path,
                options=options,
                first=first,
                rows_of_entries=rows_of_entries,
            )
            stats.rows += batch.num_rows
            yield batch


def _cut_mask(result: Any, length: int) -> np.ndarray:
    import awkward as ak

    if not isinstance(result, ak.Array):
        return np.full(length, bool(result))
    return np.asarray(ak.to_numpy(ak.fill_none(result, False)), dtype=bool)


def _to_batch(
    arrays: dict[str, Any],
    arrow_schema: pa.Schema,
    *,
    path: str,
    options: RootOptions,
    first: int,
    rows_of_entries: np.ndarray | None,
) -> pa.RecordBatch:
    import awkward as ak

    columns = []
    for arrow_field in arrow_schema:
        value = arrays[arrow_field.name]
        layout = value.layout if isinstance(value, ak.Array) else ak.to_layout(value)
        try:
            columns.append(layout_to_arrow(layout, arrow_field.type))
        except UnsignedOverflowError as err:
            row = err.row if rows_of_entries is None else int(rows_of_entries[err.row])
            raise OverflowError(
                f"branch {arrow_field.name!r} of tree {options.tree!r} in {path!r}: entry "
                f"{first + row} holds {err.value}, expected a value below 2**63 to fit the "
                f"signed bigint column (uint64 is never wrapped silently; option "
                f"uint64_as_decimal reads it as decimal(20,0))"
            ) from None
        except TypeError as err:
            raise TypeError(
                f"branch {arrow_field.name!r} of tree {options.tree!r} in {path!r}: {err}"
            ) from err
        except ValueError as err:
            raise ValueError(
                f"branch {arrow_field.name!r} of tree {options.tree!r} in {path!r}: {err}"
            ) from err
    return pa.RecordBatch.from_arrays(columns, schema=arrow_schema)
