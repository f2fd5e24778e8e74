"""The convert job's Parquet writer: pyarrow in the Spark tasks, read back by Spark unchanged.

What Spark reads from the written files must equal what ``spark.read.format("root")`` gives,
row for row and with the same schema; only the files of successful task attempts may remain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from sparkhep import convert
from sparkhep.config import SampleConfig
from sparkhep.convert import (
    ConvertOptions,
    convert_job,
    plan_sample,
    read_sample,
    sample_output,
    write_events,
    write_parquet_parts,
)
from sparkhep.generate import write_sample
from sparkhep.storage import arrow_filesystem

REPO = Path(__file__).resolve().parents[1]
EVENTS = 1500


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """One synthetic signal file of ``EVENTS`` events."""
    directory = tmp_path_factory.mktemp("generated")
    return write_sample(directory, kind="signal", n_events=EVENTS, n_files=1, seed=41)[0]


def _sample(*paths: Path | str) -> SampleConfig:
    return SampleConfig(name="s", paths=tuple(map(str, paths)), label=1)


def _parquet_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.parquet"))


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "tree", "entries"),
    [
        # 947 real NanoAOD branches: bool, uint8, int32, uint32, uint64, float and their arrays
        ("cms/nanoAOD_2015_CMS_Open_Data_ttbar.root", "Events", 200),
        # a char* branch (string) beside flat numbers
        ("misc/uproot-Zmumu.root", "events", 2304),
    ],
)
def test_real_branch_types_read_back_as_the_root_source_gives_them(
    spark, shared_data, tmp_path, name, tree, entries
):
    sample = SampleConfig(name="s", paths=(str(shared_data / name),), label=1, tree=tree)
    output = tmp_path / "types"
    parts = write_parquet_parts(spark, plan_sample(sample), output=str(output))
    expected = read_sample(spark, sample)
    written = spark.read.parquet(str(output))
    assert written.schema == expected.schema
    assert [(p.index, p.rows, p.report["entries"]) for p in parts] == [(0, entries, entries)]
    # NanoAOD holds NaN (HTXS_Higgs_y of events without a Higgs): NaN equals NaN here
    assert_df_equality(written, expected, ignore_row_order=True, allow_nan_equality=True)


@pytest.mark.shared_data
def test_pythia_files_read_back_as_the_root_source_gives_them(spark, shared_data, tmp_path):
    files = sorted((shared_data / "pythia").glob("*.root"))
    sample = _sample(*files)
    output = tmp_path / "pythia"
    parts = write_parquet_parts(spark, plan_sample(sample), output=str(output))
    expected = read_sample(spark, sample)
    written = spark.read.parquet(str(output))
    assert written.schema == expected.schema
    assert sum(p.rows for p in parts) == written.count() == 39_059
    # One file per partition (= per input file here), named after the partition.
    names = [f.name for f in _parquet_files(output)]
    assert [name.split("-")[1] for name in names] == [f"{i:05d}" for i in range(len(files))]
    assert_df_equality(written, expected, ignore_row_order=True)


def test_files_of_other_attempts_are_deleted_so_each_event_is_written_once(
    spark, generated, tmp_path
):
    output = tmp_path / "out"
    plan = plan_sample(_sample(generated), options=ConvertOptions(entry_step=500))
    first = write_parquet_parts(spark, plan, output=str(output))
    # Write again into the same directory: the first run's files stand for those of failed
    # or lost attempts (valid Parquet of the same events), which no successful result names.
    left_over = _parquet_files(output)
    assert len(left_over) == 3
    second = write_parquet_parts(spark, plan, output=str(output))
    kept = _parquet_files(output)
    assert not set(left_over) & set(kept)
    assert [f.name for f in kept] == sorted(name for part in second for name in part.files)
    assert [p.rows for p in first] == [p.rows for p in second] == [500, 500, 500]
    table = pq.read_table(output)
    assert table.num_rows == EVENTS
    assert len(set(table.column("event").to_pylist())) == EVENTS


def test_row_groups_are_bounded_by_arrow_bytes_and_compressed_with_zstd(tmp_path, monkeypatch):
    schema = pa.schema([("x", pa.int64()), ("y", pa.list_(pa.float32()))])
    batch = pa.record_batch(
        [pa.array(range(100)), pa.array([[1.0, 2.0]] * 100, pa.list_(pa.float32()))],
        schema=schema,
    )
    monkeypatch.setattr(convert, "ROW_GROUP_BYTES", 2 * batch.nbytes)
    files, rows = convert._write_file(
        [batch, batch.slice(0, 0), batch, batch, batch, batch],
        pafs.LocalFileSystem(),
        str(tmp_path),
        "part.parquet",
        schema,
        dictionary=["x"],
    )
    assert (files, rows) == (("part.parquet",), 500)
    metadata = pq.read_metadata(tmp_path / "part.parquet")
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        200,
        200,
        100,
    ]
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_only_columns_that_are_not_floating_point_get_a_dictionary(tmp_path):
    schema = pa.schema(
        [
            ("pt", pa.float32()),
            ("jet_id", pa.list_(pa.int32())),
            ("pairs", pa.list_(pa.list_(pa.float64()))),
            ("label", pa.string()),
            ("hit", pa.struct([("energy", pa.float32()), ("id", pa.int64())])),
            ("flag", pa.bool_()),
            ("big", pa.decimal128(20, 0)),
        ]
    )
    # pyarrow's leaf column paths, which its use_dictionary option matches
    expected = ["jet_id.list.element", "label", "hit.id", "flag", "big"]
    assert convert.dictionary_columns(schema) == expected
    two = pa.schema([("x", pa.float64()), ("n", pa.list_(pa.int16()))])
    batch = pa.record_batch(
        [pa.array([0.5, 1.5] * 500), pa.array([[1, 2], [3]] * 500, pa.list_(pa.int16()))],
        schema=two,
    )
    dictionary = convert.dictionary_columns(two)
    convert._write_file(
        [batch], pafs.LocalFileSystem(), str(tmp_path), "p.parquet", two, dictionary=dictionary
    )
    group = pq.read_metadata(tmp_path / "p.parquet").row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(2)}
    assert "RLE_DICTIONARY" not in encodings["x"]
    assert "RLE_DICTIONARY" in encodings["n.list.element"]


def test_a_failing_read_leaves_no_file_behind(tmp_path, monkeypatch):
    schema = pa.schema([("x", pa.int64())])

    def batches():
        yield pa.record_batch([pa.array([1, 2, 3])], schema=schema)
        raise OSError("the file went away")

    # Flush at every batch, so that the file exists when the read fails.
    monkeypatch.setattr(convert, "ROW_GROUP_BYTES", 1)
    with pytest.raises(OSError, match="went away"):
        convert._write_file(
            batches(), pafs.LocalFileSystem(), str(tmp_path), "p.parquet", schema, dictionary=[]
        )
    assert list(tmp_path.iterdir()) == []


def test_partitioned_output_equals_sparks_own_partitioned_write(spark, generated, tmp_path):
    sample = _sample(generated)
    options = ConvertOptions(branches=("event", "nJet", "Jet_pt", "MET_pt"), entry_step=700)
    parts = write_parquet_parts(
        spark,
        plan_sample(sample, options=options),
        output=str(tmp_path / "ours"),
        partition_by="nJet",
    )
    events = read_sample(spark, sample, options=options)
    write_events(events, output=str(tmp_path / "spark"), partition_by="nJet")
    ours = spark.read.parquet(str(tmp_path / "ours"))
    theirs = spark.read.parquet(str(tmp_path / "spark"))
    assert ours.columns == ["event", "Jet_pt", "MET_pt", "nJet"]
    assert ours.schema == theirs.schema
    assert_df_equality(ours, theirs, ignore_row_order=True)
    assert sum(p.rows for p in parts) == EVENTS
    values = {row["nJet"] for row in events.select("nJet").distinct().collect()}
    directories = {p.name for p in (tmp_path / "ours").iterdir() if p.is_dir()}
    assert directories == {f"nJet={value}" for value in values}
    # Each partition wrote one file per value of nJet among its own events.
    for part in parts:
        assert len(part.files) == len({name.split("/")[0] for name in part.files})


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("nJets", r"'nJets' is not a column .*closest: 'nJet'"),
        ("Jet_pt", r"'Jet_pt' is array<float>; expected a column of numbers"),
    ],
)
def test_partition_column_must_be_a_scalar_column(spark, generated, tmp_path, column, message):
    plan = plan_sample(_sample(generated), options=ConvertOptions(branches=("nJet", "Jet_pt")))
    with pytest.raises(ValueError, match=message):
        write_parquet_parts(spark, plan, output=str(tmp_path / "out"), partition_by=column)
    assert not (tmp_path / "out").exists()


def test_a_cut_that_keeps_nothing_writes_an_empty_readable_dataset(spark, generated, tmp_path):
    from sparkhep.config import load_config

    config = load_config(
        REPO / "conf/jobs/demo.toml",
        overrides=[
            f"job.output='{tmp_path / 'out'}'",
            f"samples.synthetic_ttbar.paths={[str(generated)]!r}",
            f"samples.synthetic_qcd.paths={[str(generated)]!r}",
        ],
    )
    options = ConvertOptions(branches=("event", "nJet"), cut="nJet < 0")
    results = convert_job(spark, config, options=options)
    assert [(r.rows, r.entries) for r in results] == [(0, EVENTS), (0, EVENTS)]
    output = sample_output(config, "synthetic_ttbar")
    written = spark.read.parquet(output)
    assert written.count() == 0
    assert written.schema == read_sample(spark, _sample(generated), options=options).schema
    manifest = json.loads((Path(output) / convert.MANIFEST).read_text())
    assert [(f["entries"], f["entries_cut"], f["rows"]) for f in manifest["inputs"]] == [
        (EVENTS, EVENTS, 0)
    ]


def test_arrow_filesystem_of_local_paths_and_unknown_schemes(tmp_path):
    for uri in (str(tmp_path), f"file:{tmp_path}", f"file://{tmp_path}"):
        filesystem, path = arrow_filesystem(uri)
        assert isinstance(filesystem, pafs.LocalFileSystem)
        assert path == str(tmp_path)
    with pytest.raises(OSError, match=r"neither pyarrow nor fsspec has a filesystem for 'nosuch'"):
        arrow_filesystem("nosuch://host/dir")
