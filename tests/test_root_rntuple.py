"""RNTuple (the on-disk format of LHC Run 4): 10 CMS NanoAOD events read like a TTree."""

from __future__ import annotations

import math
from typing import Any

import awkward as ak
import pytest
import uproot
from sparkhep.root import read_root

pytestmark = pytest.mark.shared_data

RNTUPLE_EVENTS = 10


@pytest.fixture(scope="module")
def rntuple_path(shared_data):
    paths = sorted((shared_data / "cms").glob("*rntuple*.root"))
    if not paths:
        pytest.skip("no ../shared/data/cms/*rntuple*.root")
    return paths[0]


def test_every_top_level_field_equals_uproot(spark, rntuple_path):
    table = read_root(spark, str(rntuple_path)).toArrow()
    with uproot.open(rntuple_path) as file:
        ntuple = file["Events"]
        assert ntuple.classname == "ROOT::RNTuple"
        expected = ntuple.arrays()
    assert table.num_rows == len(expected) == RNTUPLE_EVENTS
    assert table.column_names == list(expected.fields)
    for name in expected.fields:
        ours = ak.from_arrow(table.column(name), highlevel=True)
        assert _nan_as_text(ak.to_list(ours)) == _nan_as_text(ak.to_list(expected[name])), name


def _nan_as_text(value: Any) -> Any:
    """The same nested lists with NaN replaced by "nan", so that NaN equals NaN."""
    if isinstance(value, list):
        return [_nan_as_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _nan_as_text(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


@pytest.mark.slow  # every task parses the ~1000-field RNTuple header again (~5 s each here)
def test_rntuple_branch_selection_cut_and_entry_step(spark, rntuple_path):
    df = read_root(
        spark,
        str(rntuple_path),
        branches=["event", "nJet", "Jet_pt"],
        cut="nJet >= 2",
        aliases={"HT": "sum(Jet_pt)"},
        entry_step=5,
    )
    assert df.rdd.getNumPartitions() == 2
    with uproot.open(rntuple_path) as file:
        events = file["Events"].arrays(["event", "nJet", "Jet_pt"])
    selected = events[events.nJet >= 2]
    rows = df.collect()
    assert [row["event"] for row in rows] == ak.to_list(selected.event)
    assert [row["Jet_pt"] for row in rows] == ak.to_list(selected.Jet_pt)
    assert [row["HT"] for row in rows] == pytest.approx(ak.to_list(ak.sum(selected.Jet_pt, axis=1)))
