"""The convert job: manifest content, reuse of unchanged inputs, count check, bad inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import uproot
from sparkhep.config import load_config
from sparkhep.convert import (
    MANIFEST,
    ConversionError,
    ConvertOptions,
    _check_counts,
    _Listing,
    convert_job,
    sample_output,
)
from sparkhep.generate import write_sample

REPO = Path(__file__).resolve().parents[1]
BRANCHES = ("run", "luminosityBlock", "event", "nJet", "Jet_pt")
SIGNAL_EVENTS = 1200
BACKGROUND_EVENTS = 800


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """Two small synthetic samples of two files each, written once for the module."""
    directory = tmp_path_factory.mktemp("generated")
    write_sample(directory, kind="signal", n_events=SIGNAL_EVENTS, n_files=2, seed=21)
    write_sample(directory, kind="background", n_events=BACKGROUND_EVENTS, n_files=2, seed=22)
    return directory


@pytest.fixture
def inputs(generated, tmp_path) -> Path:
    """A private copy of the generated files, which a test may change or damage."""
    directory = tmp_path / "in"
    shutil.copytree(generated, directory)
    return directory


def _config(tmp_path: Path, signal: list[str], background: list[str]):
    return load_config(
        REPO / "conf/jobs/demo.toml",
        overrides=[
            f"job.output='{tmp_path / 'out'}'",
            f"samples.synthetic_ttbar.paths={signal!r}",
            f"samples.synthetic_qcd.paths={background!r}",
        ],
    )


def _default_config(tmp_path: Path, inputs: Path):
    return _config(
        tmp_path,
        [f"{inputs}/synthetic_signal_*.root"],
        [f"{inputs}/synthetic_background_*.root"],
    )


def _manifest(config, sample: str) -> dict:
    return json.loads((Path(sample_output(config, sample)) / MANIFEST).read_text())


def _dataset_mtimes(directory: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


def test_manifest_lists_inputs_rows_schema_and_rate(spark, inputs, tmp_path):
    config = _default_config(tmp_path, inputs)
    results = convert_job(spark, config, options=ConvertOptions(branches=BRANCHES))
    assert [(r.name, r.rows, r.reused) for r in results] == [
        ("synthetic_ttbar", SIGNAL_EVENTS, False),
        ("synthetic_qcd", BACKGROUND_EVENTS, False),
    ]
    manifest = _manifest(config, "synthetic_ttbar")
    files = sorted(inputs.glob("synthetic_signal_*.root"))
    expected_inputs = []
    for path in files:
        with uproot.open(path) as file:
            entries = file["Events"].num_entries
        expected_inputs.append(
            {
                "path": str(path),
                "size": path.stat().st_size,
                "mtime": pytest.approx(path.stat().st_mtime, abs=1e-3),
                "entries": entries,
                "entries_cut": 0,
                "rows": entries,
            }
        )
    assert manifest["inputs"] == expected_inputs
    assert sum(f["entries"] for f in manifest["inputs"]) == SIGNAL_EVENTS
    assert manifest["skipped"] == []
    assert manifest["output"]["rows"] == SIGNAL_EVENTS
    assert manifest["output"]["compression"] == "zstd"
    assert [f["name"] for f in manifest["schema"]["fields"]] == list(BRANCHES)
    assert manifest["events_per_second"] == pytest.approx(SIGNAL_EVENTS / manifest["seconds"])
    assert manifest["events_per_second"] > 0
    dataset = pq.read_table(sample_output(config, "synthetic_ttbar"))
    assert dataset.num_rows == SIGNAL_EVENTS
    assert sorted(dataset.column("event").to_pylist()) == sorted(
        uproot.concatenate([f"{p}:Events" for p in files], ["event"], library="np")[
            "event"
        ].tolist()
    )
    for file in Path(sample_output(config, "synthetic_ttbar")).glob("*.parquet"):
        assert pq.ParquetFile(file).metadata.row_group(0).column(0).compression == "ZSTD"


def test_rerun_with_unchanged_inputs_does_nothing_and_a_changed_input_rewrites(
    spark, inputs, tmp_path
):
    config = _default_config(tmp_path, inputs)
    options = ConvertOptions(branches=("event", "nJet"))
    convert_job(spark, config, options=options)
    output = Path(sample_output(config, "synthetic_ttbar"))
    before = _dataset_mtimes(output)

    again = convert_job(spark, config, options=options)
    assert [r.reused for r in again] == [True, True]
    assert [r.rows for r in again] == [SIGNAL_EVENTS, BACKGROUND_EVENTS]
    assert _dataset_mtimes(output) == before

    # A different selection is a different output: that rewrites too.
    other = convert_job(spark, config, options=ConvertOptions(branches=("event",)))
    assert [r.reused for r in other] == [False, False]

    replaced = sorted(inputs.glob("synthetic_signal_*.root"))[0]
    replaced.unlink()
    write_sample(inputs, kind="signal", n_events=100, seed=5, prefix="synthetic_signal_x")
    os.rename(inputs / "synthetic_signal_x_1.root", replaced)
    changed = convert_job(spark, config, options=ConvertOptions(branches=("event",)))
    assert [r.reused for r in changed] == [False, True]
    kept = SIGNAL_EVENTS // 2
    assert changed[0].rows == kept + 100
    assert _manifest(config, "synthetic_ttbar")["output"]["rows"] == kept + 100
    assert pq.read_table(output).num_rows == kept + 100


def test_count_check_fails_when_rows_written_differ_from_entries_read():
    tally = {
        0: {"path": "a.root", "start": 0, "stop": 10, "entries": 10, "passed": 7},
        1: {"path": "b.root", "start": 0, "stop": 5, "entries": 5, "passed": 5},
    }
    for report in tally.values():
        report |= {"rows": report["passed"], "skipped": None, "seconds": 0.1}
    listing = _Listing(files=["a.root", "b.root"])
    inputs, skipped = _check_counts("s", tally, {0: 7, 1: 5}, listing)
    assert [(f.path, f.entries, f.entries_cut, f.rows) for f in inputs] == [
        ("a.root", 10, 3, 7),
        ("b.root", 5, 0, 5),
    ]
    assert skipped == []
    with pytest.raises(ConversionError, match=r"'a.root' entries \[0, 10\): expected 10 entries"):
        _check_counts("s", tally, {0: 6, 1: 5}, listing)
    with pytest.raises(ConversionError, match=r"files never read: \['c.root'\]"):
        _check_counts("s", tally, {0: 7, 1: 5}, _Listing(files=["a.root", "b.root", "c.root"]))


# --- bad inputs ----------------------------------------------------------------------------------


def _bad_inputs(inputs: Path, tmp_path: Path) -> dict[str, Path]:
    """Beside the good signal files: a truncated copy, a text file, a file with another tree."""
    good = sorted(inputs.glob("synthetic_signal_*.root"))[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    truncated = bad / "truncated.root"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = bad / "notes.root"
    text.write_text("these are not events\n")
    other_tree = bad / "other_tree.root"
    with uproot.recreate(other_tree) as file:
        file.mktree("Runs", {"run": "int32"})
    return {"truncated": truncated, "text": text, "other_tree": other_tree}


def test_skip_converts_good_files_completely_and_lists_each_bad_one(spark, inputs, tmp_path):
    bad = _bad_inputs(inputs, tmp_path)
    config = _config(
        tmp_path,
        [f"{inputs}/synthetic_signal_*.root", *map(str, bad.values())],
        [f"{inputs}/synthetic_background_*.root"],
    )
    results = convert_job(
        spark, config, options=ConvertOptions(branches=("event", "nJet"), on_bad_file="skip")
    )
    assert [r.rows for r in results] == [SIGNAL_EVENTS, BACKGROUND_EVENTS]
    manifest = _manifest(config, "synthetic_ttbar")
    reasons = {entry["path"]: entry["reason"] for entry in manifest["skipped"]}
    assert set(reasons) == {str(p) for p in bad.values()}
    assert "is truncated: its header says" in reasons[str(bad["truncated"])]
    assert "is not a ROOT file: expected it to start with b'root'" in reasons[str(bad["text"])]
    assert "has no tree 'Events'" in reasons[str(bad["other_tree"])]
    assert "'Runs' (TTree)" in reasons[str(bad["other_tree"])]
    assert {e["path"]: e["size"] for e in manifest["skipped"]} == {
        str(p): p.stat().st_size for p in bad.values()
    }
    assert sum(f["rows"] for f in manifest["inputs"]) == SIGNAL_EVENTS
    assert pq.read_table(sample_output(config, "synthetic_ttbar")).num_rows == SIGNAL_EVENTS


@pytest.mark.parametrize("kind", ["truncated", "text", "other_tree"])
def test_fail_names_the_bad_file_and_writes_nothing(spark, inputs, tmp_path, kind):
    bad = _bad_inputs(inputs, tmp_path)[kind]
    config = _config(
        tmp_path,
        [f"{inputs}/synthetic_signal_*.root"],
        [f"{inputs}/synthetic_background_*.root", str(bad)],
    )
    with pytest.raises(ConversionError, match="synthetic_qcd") as excinfo:
        convert_job(spark, config, options=ConvertOptions(branches=("event",)))
    assert str(bad) in str(excinfo.value)
    assert _written(tmp_path / "out") == []


def _written(directory: Path) -> list[Path]:
    """Files and temporary directories under ``directory`` (empty parents do not count)."""
    return [p for p in directory.rglob("*") if p.is_file() or "incomplete" in p.name]


def test_branch_in_some_files_only_is_skipped_or_named(spark, inputs, tmp_path):
    lacking = tmp_path / "lacking.root"
    with uproot.recreate(lacking) as file:
        file.mktree("Events", {"event": "int64"})
        file["Events"].extend({"event": [1, 2, 3]})
    config = _config(
        tmp_path,
        [f"{inputs}/synthetic_signal_*.root", str(lacking)],
        [f"{inputs}/synthetic_background_*.root"],
    )
    with pytest.raises(ConversionError, match=r"lacks branches that the first file") as excinfo:
        convert_job(spark, config, options=ConvertOptions(branches=("event", "nJet")))
    assert f"{str(lacking)!r} lacks branches" in str(excinfo.value)
    assert "no branch 'nJet'" in str(excinfo.value)
    assert _written(tmp_path / "out") == []
    results = convert_job(
        spark, config, options=ConvertOptions(branches=("event", "nJet"), on_bad_file="skip")
    )
    assert results[0].rows == SIGNAL_EVENTS
    assert [s.path for s in results[0].skipped] == [str(lacking)]


def test_glob_matching_nothing_names_the_pattern_and_writes_nothing(spark, inputs, tmp_path):
    config = _config(tmp_path, [f"{inputs}/no_such_*.root"], [f"{inputs}/synthetic_signal_*.root"])
    for policy in ("fail", "skip"):
        with pytest.raises(FileNotFoundError, match=r"no ROOT file matches the pattern .*no_such_"):
            convert_job(spark, config, options=ConvertOptions(on_bad_file=policy))
    assert _written(tmp_path / "out") == []
