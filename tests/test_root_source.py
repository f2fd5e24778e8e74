"""spark.read.format("root") and read_root: values equal uproot's, bad input fails clearly."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import uproot
from pyspark.errors import AnalysisException, PythonException
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
)
from sparkhep.root import read_root
from sparkhep.root.paths import expand_paths
from sparkhep.root.source import DEFAULT_PARTITION_BYTES, parse_root_options

NANOAOD = "cms/nanoAOD_2015_CMS_Open_Data_ttbar.root"
TTBAR = "pythia/ttbar_1.root"
JET_BRANCHES = ["event", "nJet", "Jet_pt", "Jet_hadronFlavour", "MET_pt"]

SPARK_TYPE_OF_TYPENAME = {
    "bool": BooleanType(),
    "uint8_t": ShortType(),
    "int32_t": IntegerType(),
    "uint32_t": LongType(),
    "uint64_t": LongType(),
    "float": FloatType(),
}


def _comparable(values: np.ndarray) -> np.ndarray:
    """uproot's unsigned values as the signed type Spark holds them in, checked to fit."""
    if values.dtype == np.uint64:
        assert values.size == 0 or values.max() < 2**63
        return values.astype(np.int64)
    return values


def _assert_column_equals_uproot(column: pa.ChunkedArray, expected: ak.Array, name: str) -> None:
    column = column.combine_chunks()
    assert column.null_count == 0, name
    if expected.ndim == 1:
        np.testing.assert_array_equal(
            column.to_numpy(zero_copy_only=False), _comparable(ak.to_numpy(expected)), err_msg=name
        )
    else:
        np.testing.assert_array_equal(
            pc.list_value_length(column).to_numpy(), ak.to_numpy(ak.num(expected)), err_msg=name
        )
        np.testing.assert_array_equal(
            column.flatten().to_numpy(zero_copy_only=False),
            _comparable(ak.to_numpy(ak.flatten(expected))),
            err_msg=name,
        )


def _write_tree(path: Path, branches: dict[str, object]) -> Path:
    """Write a small TTree named Events (uproot's dict assignment would write an RNTuple)."""
    with uproot.recreate(path) as file:
        file.mktree(
            "Events",
            {
                name: values.type
                if isinstance(values, ak.Array)
                else (values.dtype, values.shape[1:])
                for name, values in branches.items()
            },
        )
        file["Events"].extend(branches)
    return path


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    """Four entries of unsigned, fixed-size and jagged branches, all within bigint range."""
    directory = tmp_path_factory.mktemp("small")
    return _write_tree(
        directory / "small.root",
        {
            "u8": np.array([1, 2, 255, 4], np.uint8),
            "u16": np.array([1, 2, 65535, 4], np.uint16),
            "u32": np.array([1, 2, 2**32 - 1, 4], np.uint32),
            "u64": np.array([0, 1, 2**63 - 1, 4], np.uint64),
            "i8": np.array([-1, 2, 3, -128], np.int8),
            "xyz": np.arange(12, dtype=np.float64).reshape(4, 3),
            "hits": ak.unflatten(np.array([5, 6, 7, 8], np.uint16), [1, 0, 2, 1]),
        },
    )


# --- options ---------------------------------------------------------------------------------


def test_options_parse_paths_as_spark_passes_them():
    one = parse_root_options({"path": "/data/a.root"})
    assert one.paths == ("/data/a.root",)
    assert (one.tree, one.branches, one.entry_step) == ("Events", None, None)
    assert one.partition_bytes == DEFAULT_PARTITION_BYTES
    many = parse_root_options(
        {"paths": json.dumps(["/a.root", "/b,c.root"]), "Tree": "t", "branches": " x, Jet_* ,x"}
    )
    assert many.paths == ("/a.root", "/b,c.root")
    assert many.tree == "t"
    assert many.branches == ("x", "Jet_*")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "expected one or more ROOT file paths"),
        ({"path": "a.root", "entry_step": "10k"}, "'entry_step' must be a positive whole number"),
        ({"path": "a.root", "entry_step": "0"}, "got '0'"),
        ({"path": "a.root", "entrystep": "10"}, "did you mean 'entry_step'"),
        ({"path": "a.root", "branches": " , "}, "option 'branches'"),
        ({"paths": "a.root"}, "JSON list"),
    ],
)
def test_bad_options_are_rejected_with_what_was_expected(options, message):
    with pytest.raises(ValueError, match=message):
        parse_root_options(options)


def test_expand_paths_lists_local_files_and_passes_urls_through(tmp_path):
    for name in ("b.root", "a.root", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    remote = "root://127.0.0.1:1//store/events.root"
    web = "https://127.0.0.1:1/events*.root?version=2"
    assert expand_paths([str(tmp_path), remote, web, f"file://{tmp_path}/b.root"]) == [
        str(tmp_path / "a.root"),
        str(tmp_path / "b.root"),
        remote,
        web,
        str(tmp_path / "b.root"),
    ]
    with pytest.raises(FileNotFoundError, match=r"missing\.root' does not exist"):
        expand_paths([str(tmp_path / "missing.root")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no \*\.root files"):
        expand_paths([str(tmp_path / "empty")])


# --- values ----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_every_nanoaod_branch_equals_uproot(spark, shared_data):
    path = shared_data / NANOAOD
    df = spark.read.format("root").load(str(path))
    table = df.toArrow()
    with uproot.open(path) as file:
        tree = file["Events"]
        typenames = {name: tree[name].typename for name in tree.keys(recursive=True)}
        expected = tree.arrays(library="ak", how=dict)
    assert df.columns == list(typenames)
    assert len(df.columns) == 947
    assert table.num_rows == 200
    for field in df.schema.fields:
        typename = typenames[field.name]
        element = SPARK_TYPE_OF_TYPENAME[typename.removesuffix("[]")]
        assert field.dataType == (ArrayType(element) if typename.endswith("[]") else element)
        _assert_column_equals_uproot(table.column(field.name), expected[field.name], field.name)


def test_unsigned_fixed_size_and_jagged_types(spark, small_file):
    df = spark.read.format("root").load(str(small_file))
    assert df.schema.simpleString() == (
        "struct<u8:smallint,u16:int,u32:bigint,u64:bigint,i8:tinyint,xyz:array<double>,"
        "nhits:int,hits:array<int>>"
    )
    rows = [row.asDict() for row in df.collect()]
    assert rows[2] == {
        "u8": 255,
        "u16": 65535,
        "u32": 2**32 - 1,
        "u64": 2**63 - 1,
        "i8": 3,
        "xyz": [6.0, 7.0, 8.0],
        "nhits": 2,
        "hits": [6, 7],
    }
    assert [row["hits"] for row in rows] == [[5], [], [6, 7], [8]]
    assert [row["i8"] for row in rows] == [-1, 2, 3, -128]


@pytest.mark.shared_data
def test_char_star_branch_reads_as_string(spark, shared_data):
    path = shared_data / "misc/uproot-Zmumu.root"
    df = (
        spark.read.format("root")
        .option("tree", "events")
        .option("branches", "Type,M")
        .load(str(path))
    )
    assert df.schema["Type"].dataType == StringType()
    table = df.toArrow()
    with uproot.open(path) as file:
        expected = file["events"].arrays(["Type", "M"], library="np")
    assert table.column("Type").to_pylist() == list(expected["Type"])
    np.testing.assert_array_equal(table.column("M").to_numpy(), expected["M"])


@pytest.mark.shared_data
def test_read_root_branch_subset_exact_count_and_columns(spark, shared_data):
    path = shared_data / TTBAR
    df = read_root(spark, [str(path)], branches=JET_BRANCHES)
    assert df.columns == JET_BRANCHES
    assert df.count() == 5308
    table = df.toArrow()
    with uproot.open(path) as file:
        expected = file["Events"].arrays(JET_BRANCHES, library="ak", how=dict)
    for name in JET_BRANCHES:
        _assert_column_equals_uproot(table.column(name), expected[name], name)
    np.testing.assert_array_equal(
        table.column("nJet").to_numpy(), pc.list_value_length(table.column("Jet_pt")).to_numpy()
    )


@pytest.mark.shared_data
def test_small_entry_step_gives_many_partitions_and_the_same_rows(spark, shared_data):
    path = str(shared_data / TTBAR)
    whole = read_root(spark, [path], branches=JET_BRANCHES)
    split = read_root(spark, [path], branches=JET_BRANCHES, entry_step=500)
    assert whole.rdd.getNumPartitions() == 1
    assert split.rdd.getNumPartitions() == 11
    assert whole.toArrow().equals(split.toArrow())


@pytest.mark.shared_data
def test_read_root_expands_globs_and_file_urls_on_the_driver(spark, shared_data):
    pattern = f"file://{shared_data}/pythia/ttbar_[12].root"
    df = read_root(spark, pattern, branches=["event"])
    assert df.count() == 5308 + 5305
    with pytest.raises(FileNotFoundError, match=r"ttbar_9\*\.root"):
        read_root(spark, [str(shared_data / "pythia/ttbar_9*.root")])


# --- uint64 beyond bigint --------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        np.array([1, 2, 2**63, 4], np.uint64),
        ak.unflatten(np.array([1, 2, 3, 2**63, 5], np.uint64), [1, 0, 3, 1]),
    ],
    ids=["flat", "jagged"],
)
def test_uint64_at_or_above_2_to_63_names_file_branch_and_entry(spark, tmp_path, values):
    path = _write_tree(tmp_path / "big.root", {"big_counter": values})
    df = spark.read.format("root").option("entry_step", "2").load(str(path))
    with pytest.raises(PythonException, match="big_counter") as excinfo:
        df.collect()
    message = str(excinfo.value)
    assert str(path) in message
    assert "entry 2 holds 9223372036854775808" in message


# --- bad input -------------------------------------------------------------------------------


def test_text_file_named_root_is_not_a_root_file(spark, tmp_path):
    path = tmp_path / "notes.root"
    path.write_text("these are not events\n")
    with pytest.raises(AnalysisException, match="is not a ROOT file") as excinfo:
        spark.read.format("root").load(str(path))
    assert str(path) in str(excinfo.value)
    assert "expected it to start with b'root'" in str(excinfo.value)


@pytest.mark.shared_data
def test_truncated_file_fails_at_load(spark, shared_data, tmp_path):
    source = shared_data / TTBAR
    path = tmp_path / "half.root"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(AnalysisException, match="is truncated") as excinfo:
        spark.read.format("root").load(str(path))
    assert str(path) in str(excinfo.value)


@pytest.mark.shared_data
def test_truncated_second_file_fails_at_load(spark, shared_data, tmp_path):
    source = shared_data / TTBAR
    path = tmp_path / "half.root"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    reader = spark.read.format("root").option("branches", "event")
    with pytest.raises(AnalysisException, match="is truncated") as excinfo:
        reader.load([str(source), str(path)])
    assert str(path) in str(excinfo.value)


@pytest.mark.shared_data
def test_missing_tree_lists_the_keys_that_exist(spark, shared_data):
    path = shared_data / TTBAR
    with pytest.raises(AnalysisException, match="has no tree 'Evnts'") as excinfo:
        spark.read.format("root").option("tree", "Evnts").load(str(path))
    message = str(excinfo.value)
    assert str(path) in message
    assert "'Events' (TTree)" in message


@pytest.mark.shared_data
def test_missing_branch_lists_the_closest_names(spark, shared_data):
    path = shared_data / TTBAR
    reader = spark.read.format("root").option("branches", "event,Jet_ptt,Muon_*,Tau_*")
    with pytest.raises(AnalysisException, match="lacks requested branches") as excinfo:
        reader.load(str(path))
    message = str(excinfo.value)
    assert str(path) in message
    assert "no branch 'Jet_ptt' (closest: 'Jet_pt'" in message
    assert "no branch matches 'Tau_*'" in message
    assert "Muon_*" not in message


@pytest.mark.shared_data
def test_unsupported_branch_types_are_listed_together_when_requested(shared_data, monkeypatch):
    from sparkhep.root import reader

    forms = reader.EventsReader.forms
    monkeypatch.setattr(
        reader.EventsReader,
        "forms",
        lambda self, names: {
            name: None if name.startswith("Muon_") else form
            for name, form in forms(self, names).items()
        },
    )
    path = str(shared_data / TTBAR)
    requested = parse_root_options({"path": path, "branches": "event,Muon_pt,Muon_eta"})
    with pytest.raises(TypeError, match="no Spark column type") as excinfo:
        reader.scan_files(requested)
    assert "'Muon_pt' (float[]), 'Muon_eta' (float[])" in str(excinfo.value)
    assert path in str(excinfo.value)
    skipped = reader.scan_files(parse_root_options({"path": path, "branches": "event,Muon_*"}))
    assert skipped.schema.fieldNames() == ["event"]


# --- workers without sparkhep ----------------------------------------------------------------


def test_workers_without_sparkhep_get_the_fix_in_the_error(spark, small_file, tmp_path):
    """Register the source as a session whose Python lacks sparkhep would: the hint reaches us.

    Spark records the worker interpreter (``PYSPARK_PYTHON``, kept as ``pythonExec``) with
    the data source at registration, so registering while it names a bare virtualenv (no
    sparkhep, pyarrow or uproot) is what ``pyspark`` started with the system ``python3`` does.
    """
    from sparkhep.root.source import register_root_source

    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    bare_python = str(bare / "bin" / "python")
    probe = subprocess.run([bare_python, "-c", "import sparkhep"], capture_output=True, check=False)
    assert probe.returncode != 0
    context = spark.sparkContext
    python = context.pythonExec
    try:
        context.pythonExec = bare_python
        register_root_source(spark)
        with pytest.raises(
            AnalysisException, match="cannot import sparkhep's ROOT reader"
        ) as excinfo:
            spark.read.format("root").load(str(small_file))
    finally:
        context.pythonExec = python
        register_root_source(spark)
    message = str(excinfo.value)
    assert "PYSPARK_PYTHON=/path/to/.venv/bin/python" in message
    assert "sparkhep.session.build_session()" in message
    assert f"the workers run {bare_python}" in message
    assert spark.read.format("root").load(str(small_file)).columns[0] == "u8"
