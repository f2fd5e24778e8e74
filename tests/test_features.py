"""Features from hand-made events, checked against values computed by hand."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from chispa import assert_df_equality
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    FloatType,
    LongType,
    StructField,
    StructType,
)
from sparkhep.features.compute import compute_features
from sparkhep.features.spark import build_features
from sparkhep.features.spec import CollectionFeatures, EventFeature, FeatureSpec

SPEC = FeatureSpec(
    collections=(
        CollectionFeatures(
            prefix="Jet",
            n=3,
            order_by="pt",
            fields=("pt", "btagDeepB"),
            fill_value=-1.0,
            mask=False,
        ),
    ),
    event=(
        EventFeature(name="nJet", kind="count", collection="Jet"),
        EventFeature(name="HT", kind="ht", collection="Jet"),
        EventFeature(
            name="nBTag", kind="nbtag", collection="Jet", field="btagDeepB", working_point=0.5
        ),
        EventFeature(name="MET_pt", kind="branch", branch="MET_pt"),
    ),
)

# event 1: three jets, not pT-ordered, one b-tag exactly at the working point (not tagged)
# event 2: no jets at all
# event 3: four jets (more than the 3 slots), two tagged
EVENTS = [
    (1, [50.0, 120.0, 30.0], [0.6, 0.5, 0.2], 20.0),
    (2, [], [], 5.5),
    (3, [40.0, 90.0, 60.0, 200.0], [0.9, 0.1, 0.7, 0.3], 0.0),
]
EXPECTED = {
    # event: Jet1_pt, Jet1_btagDeepB, Jet2_pt, Jet2_btagDeepB, Jet3_pt, Jet3_btagDeepB,
    #        nJet, HT, nBTag, MET_pt
    1: (120.0, 0.5, 50.0, 0.6, 30.0, 0.2, 3.0, 200.0, 1.0, 20.0),
    2: (-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 5.5),
    3: (200.0, 0.3, 90.0, 0.1, 60.0, 0.7, 4.0, 390.0, 2.0, 0.0),
}


def _batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "event": pa.array([e[0] for e in EVENTS], pa.int64()),
            "Jet_pt": pa.array([e[1] for e in EVENTS], pa.list_(pa.float32())),
            "Jet_btagDeepB": pa.array([e[2] for e in EVENTS], pa.list_(pa.float32())),
            "MET_pt": pa.array([e[3] for e in EVENTS], pa.float32()),
        }
    )


def test_feature_names_are_slot_major_then_event_features():
    assert SPEC.feature_names() == [
        "Jet1_pt", "Jet1_btagDeepB", "Jet2_pt", "Jet2_btagDeepB", "Jet3_pt", "Jet3_btagDeepB",
        "nJet", "HT", "nBTag", "MET_pt",
    ]  # fmt: skip
    assert SPEC.branches() == ["Jet_pt", "Jet_btagDeepB", "MET_pt"]


def test_numpy_features_equal_hand_computed_values():
    features = compute_features(_batch(), SPEC)
    table = np.column_stack([features[name] for name in SPEC.feature_names()])
    expected = np.array([EXPECTED[e[0]] for e in EVENTS])
    # float32 inputs: 0.6 as float32 is 0.60000002384…, so compare at float32 precision
    np.testing.assert_allclose(table, expected, rtol=1e-7)
    assert list(features) == SPEC.feature_names()


def test_null_lists_and_nan_values_become_fill_values():
    batch = pa.RecordBatch.from_pydict(
        {
            "Jet_pt": pa.array([None, [float("nan"), 10.0]], pa.list_(pa.float64())),
            "Jet_btagDeepB": pa.array([None, [0.9, None]], pa.list_(pa.float64())),
            "MET_pt": pa.array([None, 3.0], pa.float64()),
        }
    )
    features = compute_features(batch, SPEC)
    assert features["nJet"].tolist() == [0.0, 2.0]
    assert features["Jet1_pt"].tolist() == [-1.0, 10.0]
    assert features["Jet1_btagDeepB"].tolist() == [-1.0, -1.0]
    assert features["Jet2_pt"].tolist() == [-1.0, -1.0]
    assert features["Jet2_btagDeepB"].tolist() == [-1.0, 0.9]
    assert features["MET_pt"].tolist() == [0.0, 3.0]
    assert all(np.isfinite(v).all() for v in features.values())


def test_misaligned_collection_branches_are_an_error():
    batch = _batch()
    bad = batch.set_column(2, "Jet_btagDeepB", pa.array([[0.1], [], [0.2]], pa.list_(pa.float32())))
    with pytest.raises(ValueError, match=r"Jet_btagDeepB.*Jet_pt"):
        compute_features(bad, SPEC)


def test_missing_branch_is_named():
    with pytest.raises(KeyError, match="MET_pt"):
        compute_features(_batch().drop_columns(["MET_pt"]), SPEC)


def test_spark_features_equal_hand_computed_values(spark):
    schema = StructType(
        [
            StructField("event", LongType(), False),
            StructField("Jet_pt", ArrayType(FloatType(), False), False),
            StructField("Jet_btagDeepB", ArrayType(FloatType(), False), False),
            StructField("MET_pt", FloatType(), False),
        ]
    )
    events = spark.createDataFrame(EVENTS, schema).repartition(2)
    actual = build_features(events, SPEC, keep=["event"])
    out_schema = StructType(
        [StructField("event", LongType(), False)]
        + [StructField(n, DoubleType(), False) for n in SPEC.feature_names()]
    )
    expected = spark.createDataFrame(
        [(e, *(float(np.float32(v)) for v in values)) for e, values in EXPECTED.items()],
        out_schema,
    )
    assert_df_equality(actual, expected, ignore_row_order=True)
