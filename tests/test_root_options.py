"""The options of spark.read.format("root"): parsing, cut, aliases, exclude, entry_step by size,
recursive listing, type widening across files, and every kind of bad file, failing or skipped."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from pyspark.errors import AnalysisException, PythonException
from sparkhep.root import read_root
from sparkhep.root.source import RootPartition, SkippedFile, parse_root_options

TTBAR = "pythia/ttbar_1.root"
TTBAR_EVENTS = 5308


def write_tree(path: Path, branches: dict[str, object], *, tree: str = "Events") -> Path:
    """A TTree with the given branches (numpy arrays or jagged awkward arrays)."""
    with uproot.recreate(path) as file:
        file.mktree(
            tree,
            {
                name: values.type
                if isinstance(values, ak.Array)
                else (values.dtype, values.shape[1:])
                for name, values in branches.items()
            },
        )
        if len(next(iter(branches.values()))):
            file[tree].extend(branches)
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, Path]:
    """Small files that agree, that widen, that conflict, that lack a branch or are bad."""
    d = tmp_path_factory.mktemp("mixed")
    narrow = {"x": np.arange(3, dtype=np.int32), "y": np.array([0.5, 1.5, 2.5], np.float32)}
    wide = {"x": np.array([2**40, 7], np.int64), "y": np.array([0.1, 0.2], np.float64)}
    return {
        "narrow": write_tree(d / "narrow.root", {**narrow, "extra": np.ones(3, np.int16)}),
        "wide": write_tree(d / "wide.root", wide),
        "conflict": write_tree(
            d / "conflict.root", {"x": np.ones(2, np.float32), "y": np.ones(2, np.float32)}
        ),
        "empty": write_tree(
            d / "empty.root", {"x": np.zeros(0, np.int32), "y": np.zeros(0, np.float32)}
        ),
        "other_tree": write_tree(d / "other_tree.root", wide, tree="Other"),
        "text": _text_file(d / "notes.root"),
    }


def _text_file(path: Path) -> Path:
    path.write_text("not a ROOT file\n")
    return path


# --- parsing ---------------------------------------------------------------------------------


def test_every_option_parses_into_its_type():
    options = parse_root_options(
        {
            "path": "a.root",
            "exclude": "Muon_*, HLT_*",
            "entry_step": "64 MB",
            "cut": "nJet >= 6",
            "aliases": '{"HT": "sum(Jet_pt)", "lead": "max(Jet_pt)"}',
            "recursive": "true",
            "on_bad_file": "SKIP",
            "uint64_as_decimal": "1",
        }
    )
    assert options.exclude == ("Muon_*", "HLT_*")
    assert (options.entry_step, options.partition_bytes) == (None, 64_000_000)
    assert options.cut == "nJet >= 6"
    assert options.aliases == (("HT", "sum(Jet_pt)"), ("lead", "max(Jet_pt)"))
    assert (options.recursive, options.on_bad_file, options.uint64_as_decimal) == (
        True,
        "skip",
        True,
    )
    assert parse_root_options({"path": "a", "aliases": "a=x+1; b = sqrt(y)"}).aliases == (
        ("a", "x+1"),
        ("b", "sqrt(y)"),
    )
    assert parse_root_options({"path": "a", "entry_step": "1_000"}).entry_step == 1000


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_bad_file": "ignore"}, r"'on_bad_file' must be one of 'fail', 'skip', got 'ignore'"),
        ({"recursive": "yes please"}, r"'recursive' must be 'true' or 'false'"),
        ({"cut": "nJet >"}, r"option 'cut': expected an expression .* got 'nJet >'"),
        ({"cut": "__import__('os')"}, r"unknown function '__import__'"),
        ({"cut": "Jet.pt > 1"}, r"Attribute is not allowed"),
        ({"aliases": "HT"}, r"'name=expression' pairs"),
        ({"aliases": '{"1x": "a"}'}, r"expected a column name .* got '1x'"),
        ({"aliases": '{"a": 3}'}, r"map names to expression strings"),
        ({"entry_step": "0 MB"}, r"'entry_step' must be a positive whole number"),
        ({"exclude": ","}, r"option 'exclude'"),
    ],
)
def test_bad_option_values_say_what_was_expected(options, message):
    with pytest.raises(ValueError, match=message):
        parse_root_options({"path": "a.root", **options})


# --- cut, aliases, exclude, entry_step --------------------------------------------------------


@pytest.mark.shared_data
def test_cut_and_aliases_equal_the_same_selection_in_numpy(spark, shared_data):
    path = shared_data / TTBAR
    df = read_root(
        spark,
        str(path),
        branches=["event", "nJet", "Jet_pt"],
        cut="nJet >= 6 and MET_pt > 40",
        aliases={"HT": "sum(Jet_pt)", "lead": "max(Jet_pt)", "n30": "sum(Jet_pt > 30)"},
        entry_step=1000,
    )
    assert df.schema.simpleString() == (
        "struct<event:bigint,nJet:int,Jet_pt:array<float>,HT:float,lead:float,n30:bigint>"
    )
    table = df.toArrow()
    with uproot.open(path) as file:
        events = file["Events"].arrays(["event", "nJet", "Jet_pt", "MET_pt"])
    keep = (events.nJet >= 6) & (events.MET_pt > 40)
    selected = events[keep]
    assert table.num_rows == int(ak.sum(keep)) == 268
    np.testing.assert_array_equal(table.column("event").to_numpy(), selected.event.to_numpy())
    np.testing.assert_array_equal(table.column("HT").to_numpy(), ak.sum(selected.Jet_pt, axis=1))
    np.testing.assert_array_equal(table.column("lead").to_numpy(), ak.max(selected.Jet_pt, axis=1))
    np.testing.assert_array_equal(
        table.column("n30").to_numpy(), ak.sum(selected.Jet_pt > 30, axis=1)
    )


def test_alias_of_an_empty_list_is_null_and_a_jagged_cut_is_refused(spark, mixed, tmp_path):
    path = write_tree(
        tmp_path / "jets.root",
        {"pt": ak.Array([[3.0, 1.0], [], [2.0]]), "w": np.array([1.0, 2.0, 3.0], np.float32)},
    )
    rows = read_root(spark, str(path), aliases={"top": "max(pt)"}).collect()
    assert [row["top"] for row in rows] == [3.0, None, 2.0]
    with pytest.raises(AnalysisException, match=r"one boolean per entry, got var \* bool"):
        read_root(spark, str(path), cut="pt > 1")
    with pytest.raises(AnalysisException, match=r"lacks requested branches: no branch 'ww'"):
        read_root(spark, str(path), cut="ww > 1")


@pytest.mark.shared_data
def test_exclude_and_entry_step_by_size(spark, shared_data):
    path = str(shared_data / TTBAR)
    df = read_root(spark, path, exclude=["Jet_*", "Muon_*", "n*"], entry_step="100 kB")
    assert df.columns == ["run", "luminosityBlock", "event", "genWeight", "MET_pt", "MET_phi"]
    with uproot.open(path) as file:
        tree = file["Events"]
        per_entry = sum(tree[name].uncompressed_bytes for name in df.columns) / tree.num_entries
    step = int(100_000 // per_entry)
    assert df.rdd.getNumPartitions() == -(-TTBAR_EVENTS // step)
    assert df.count() == TTBAR_EVENTS


def test_recursive_lists_subdirectories(spark, mixed, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.root").write_bytes(mixed["wide"].read_bytes())
    (tmp_path / "a" / "b" / "two.root").write_bytes(mixed["wide"].read_bytes())
    assert read_root(spark, str(tmp_path / "a"), branches=["x"]).count() == 2
    assert read_root(spark, str(tmp_path / "a"), branches=["x"], recursive=True).count() == 4
    with pytest.raises(FileNotFoundError, match="option recursive lists subdirectories"):
        read_root(spark, str(tmp_path))


# --- types across files ------------------------------------------------------------------------


def test_narrower_types_widen_to_the_wider_file(spark, mixed):
    df = read_root(spark, [str(mixed["narrow"]), str(mixed["wide"])], branches=["x", "y"])
    assert df.schema.simpleString() == "struct<x:bigint,y:double>"
    rows = [tuple(row) for row in df.collect()]
    assert rows == [(0, 0.5), (1, 1.5), (2, 2.5), (2**40, 0.1), (7, 0.2)]


def test_types_that_cannot_widen_name_both_files(spark, mixed):
    with pytest.raises(AnalysisException, match=r"expected branch types") as excinfo:
        read_root(spark, [str(mixed["narrow"]), str(mixed["conflict"])], branches=["x", "y"])
    message = str(excinfo.value)
    assert "branch 'x' is float here but int in" in message
    assert str(mixed["narrow"]) in message
    assert str(mixed["conflict"]) in message


# --- bad files: fail names the file, skip leaves it out ------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("text", r"is not a ROOT file: expected it to start with b'root', got b'not '"),
        (
            "other_tree",
            r"has no tree 'Events' \(option 'tree'\); the file holds: 'Other' \(TTree\)",
        ),
        ("conflict", r"branch 'x' is float here but bigint in"),
    ],
)
def test_bad_file_fails_by_default_and_is_skipped_on_request(spark, mixed, bad, message):
    paths = [str(mixed["wide"]), str(mixed[bad]), str(mixed["empty"])]
    with pytest.raises(AnalysisException, match=message) as excinfo:
        read_root(spark, paths, branches=["x", "y"])
    assert str(mixed[bad]) in str(excinfo.value)
    skipping = read_root(spark, paths, branches=["x", "y"], on_bad_file="skip")
    assert [row["x"] for row in skipping.collect()] == [2**40, 7]


def test_branch_present_in_some_files_only(spark, mixed):
    paths = [str(mixed["narrow"]), str(mixed["wide"])]
    with pytest.raises(AnalysisException, match="lacks requested branches") as excinfo:
        read_root(spark, paths[::-1], branches=["x", "extra"])
    assert f"{str(mixed['wide'])!r} lacks requested branches: no branch 'extra'" in str(
        excinfo.value
    )
    with pytest.raises(AnalysisException, match="lacks branches that the first file") as excinfo:
        read_root(spark, paths, branches=["x", "ex*"])
    assert (
        f"{str(mixed['wide'])!r} lacks branches that the first file {str(mixed['narrow'])!r}"
        f" has: no branch 'extra'" in str(excinfo.value)
    )
    skipping = read_root(spark, paths, branches=["x", "extra"], on_bad_file="skip")
    assert [tuple(row) for row in skipping.collect()] == [(0, 1), (1, 1), (2, 1)]


def test_tree_with_zero_entries_gives_zero_rows(spark, mixed):
    df = read_root(spark, str(mixed["empty"]))
    assert df.schema.simpleString() == "struct<x:int,y:float>"
    assert df.count() == 0


def test_file_deleted_between_listing_and_reading(spark, mixed, tmp_path):
    from sparkhep.root import reader
    from sparkhep.root.source import RootDataSourceReader

    doomed = tmp_path / "doomed.root"
    doomed.write_bytes(mixed["wide"].read_bytes())
    paths = [str(mixed["narrow"]), str(doomed)]
    failing = read_root(spark, paths, branches=["x"])
    skipping = read_root(spark, paths, branches=["x"], on_bad_file="skip")
    doomed.unlink()
    with pytest.raises(PythonException, match=f"ROOT file '{doomed}' does not exist"):
        failing.collect()
    assert [row["x"] for row in skipping.collect()] == [0, 1, 2]

    options = parse_root_options({"path": str(mixed["narrow"]), "on_bad_file": "skip"})
    scan = reader.scan_files(options)
    source = RootDataSourceReader(options, scan.schema, scan=scan)
    assert source.partitions() == [RootPartition(0, str(mixed["narrow"]), 0, 3)]
    assert list(source.read(RootPartition(1, str(doomed), 0, 2))) == []
    assert list(source.read(SkippedFile(2, str(doomed), "gone"))) == []


def test_glob_matching_nothing_fails_in_both_modes(spark, tmp_path):
    for policy in ("fail", "skip"):
        with pytest.raises(FileNotFoundError, match=r"no ROOT file matches the pattern .*nothing_"):
            read_root(spark, str(tmp_path / "nothing_*.root"), on_bad_file=policy)
