"""The JVM-free numpy scorer against Spark itself, on a small synthetic table.

Each engine is trained once (module fixture) on features computed from hand-generated raw
events; Spark's ``probability[1]`` of the same rows is the reference. The Pythia parity tests
are in test_train_pythia.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sparkhep.config import ModelConfig
from sparkhep.features.compute import compute_features
from sparkhep.features.spec import CollectionFeatures, EventFeature, FeatureSpec
from sparkhep.registry import flavor
from sparkhep.scoring import load_pipeline, load_scoring_model, sparkml, trees
from sparkhep.train.pipeline import fit_pipeline

N_EVENTS = 1500
TOLERANCE = {"gbt": 1e-9, "mlp": 1e-9, "xgboost": 1e-6}
ENGINE_PARAMS = {
    "gbt": {"maxIter": 15, "maxDepth": 4},
    "mlp": {"maxIter": 40},
    "xgboost": {"n_estimators": 30, "max_depth": 4},
}
SPEC = FeatureSpec(
    collections=(CollectionFeatures(prefix="Jet", n=2, fields=("pt", "eta")),),
    event=(
        EventFeature(name="HT", kind="ht", collection="Jet"),
        EventFeature(name="MET", kind="branch", branch="MET_pt"),
    ),
)
FEATURES = SPEC.feature_names()


def synthetic_events(n: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """Raw events (jagged Jet_pt/Jet_eta as float32 lists, MET_pt) and a 0/1 label."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    counts = rng.integers(0, 5, n) + label
    pt = [list(rng.exponential(40 + 30 * y, c) + 20) for c, y in zip(counts, label, strict=True)]
    eta = [list(rng.normal(0, 2.0 - y, c)) for c, y in zip(counts, label, strict=True)]
    met = rng.exponential(30 + 10 * label)
    table = pa.table(
        {
            "Jet_pt": pa.array(pt, pa.list_(pa.float32())),
            "Jet_eta": pa.array(eta, pa.list_(pa.float32())),
            "MET_pt": pa.array(met, pa.float32()),
        }
    )
    return table, label.astype(np.float64)


@pytest.fixture(scope="module")
def events() -> tuple[pa.Table, pd.DataFrame]:
    raw, label = synthetic_events(N_EVENTS, seed=5)
    features = pd.DataFrame(compute_features(raw, SPEC))
    return raw, features.assign(label=label)


@pytest.fixture(scope="module")
def fitted(spark, events, tmp_path_factory) -> dict:
    """engine → (saved pipeline dir, two-flavor model dir, Spark's P(signal) of every event)."""
    from pyspark.ml.functions import vector_to_array

    raw, features = events
    rng = np.random.default_rng(1)
    rows = features.assign(
        train_weight=rng.uniform(0.5, 1.5, len(features)),
        is_validation=rng.uniform(size=len(features)) < 0.2,
    )
    frame = spark.createDataFrame(rows)
    out = {}
    for engine, params in ENGINE_PARAMS.items():
        model = fit_pipeline(
            frame, FEATURES, ModelConfig(engine=engine, params=params, hidden_layers=(6, 4))
        )
        directory = tmp_path_factory.mktemp(engine)
        model.write().save(str(directory / "pipeline"))
        flavor.save_model(
            model,
            directory / "mlflow",
            feature_spec=SPEC,
            feature_names=FEATURES,
            raw_example=raw.slice(0, 3),
            input_example=features.head(3),
            engine=engine,
        )
        scored = model.transform(frame).select(vector_to_array("probability")[1].alias("p"))
        out[engine] = (directory, scored.toPandas()["p"].to_numpy())
    return out


@pytest.mark.parametrize("engine", ["gbt", "mlp", "xgboost"])
def test_numpy_scores_equal_spark(fitted, events, engine):
    directory, spark_p = fitted[engine]
    _, features = events
    scorer = load_pipeline(directory / "pipeline")
    assert scorer.engine == engine
    assert scorer.input_columns == FEATURES
    numpy_p = scorer.predict_matrix(features[FEATURES].to_numpy())
    difference = np.abs(numpy_p - spark_p).max()
    print(f"{engine}: max |numpy - Spark| = {difference:.3g} over {len(spark_p)} events")
    assert difference <= TOLERANCE[engine]
    assert 0.05 < spark_p.mean() < 0.95  # a model that learnt something, not a constant


def test_gbt_every_tree_evaluator_equals_spark(fitted, events):
    directory, spark_p = fitted["gbt"]
    _, features = events
    stage = load_pipeline(directory / "pipeline").final.metadata
    ensemble = sparkml.read_gbt(stage)
    assert ensemble.num_trees > 1
    x = features[FEATURES].to_numpy()
    walked = trees.numpy_evaluator(ensemble)(x)
    for evaluator in (trees.treelite_evaluator, trees.compiled_evaluator):
        assert np.abs(evaluator(ensemble)(x) - spark_p).max() <= 1e-9
    assert np.abs(walked - spark_p).max() <= 1e-9
    # NaN goes right at every split, as Spark's `x <= threshold` test sends it
    holes = x.copy()
    holes[::3, :] = np.nan
    np.testing.assert_allclose(
        trees.compiled_evaluator(ensemble)(holes),
        trees.numpy_evaluator(ensemble)(holes),
        rtol=0,
        atol=1e-12,
    )


def test_gbt_tree_weights_are_one_then_step_size(fitted):
    directory, _ = fitted["gbt"]
    metadata = load_pipeline(directory / "pipeline").final.metadata
    weights = sparkml.read_data(metadata.path / "treesMetadata").column("_3").to_pylist()
    assert weights[0] == 1.0
    assert set(weights[1:]) == {0.2}  # GBT_DEFAULTS stepSize


def test_raw_events_give_the_hand_computed_features_and_the_same_scores(fitted):
    model = load_scoring_model(fitted["gbt"][0] / "mlflow")
    assert model.raw_branches == ["Jet_pt", "Jet_eta", "MET_pt"]
    raw = pd.DataFrame(
        {
            "Jet_pt": [[30.0, 50.0, 10.0], [], [40.0]],
            "Jet_eta": [[0.1, -1.0, 2.0], [], [0.5]],
            "MET_pt": [20.0, 5.0, 70.0],
        }
    )
    # Jet1_pt, Jet1_eta, Jet1_mask, Jet2_pt, Jet2_eta, Jet2_mask, HT, MET
    expected = np.array(
        [
            [50.0, -1.0, 1.0, 30.0, 0.1, 1.0, 90.0, 20.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0],
            [40.0, 0.5, 1.0, 0.0, 0.0, 0.0, 40.0, 70.0],
        ]
    )
    assert model.feature_names == FEATURES
    computed = model.features_from_raw(pa.Table.from_pandas(raw))
    np.testing.assert_array_equal(computed, expected)
    by_matrix = model.predict_matrix(expected)
    np.testing.assert_array_equal(model.predict_frame(raw), by_matrix)
    np.testing.assert_array_equal(
        model.predict_frame(pd.DataFrame(expected, columns=FEATURES)), by_matrix
    )


def test_unknown_stage_fails_at_load_naming_it(fitted, tmp_path):
    copy = tmp_path / "pipeline"
    shutil.copytree(fitted["gbt"][0] / "pipeline", copy)
    metadata = next((copy / "stages").glob("0_*/metadata/part-*"))
    stage = json.loads(metadata.read_text())
    metadata.write_text(
        json.dumps({**stage, "class": "org.apache.spark.ml.feature.PCAModel"}) + "\n"
    )
    with pytest.raises(ValueError, match=rf"PCAModel \(uid {stage['uid']}\).*not supported"):
        load_pipeline(copy)


def test_bad_input_is_a_value_error_naming_the_column(fitted):
    model = load_scoring_model(fitted["gbt"][0] / "mlflow")
    good = pd.DataFrame(np.ones((2, len(FEATURES))), columns=FEATURES)
    with pytest.raises(ValueError, match=r"lacks columns \['HT'\].*lacks branches"):
        model.predict_frame(good.drop(columns="HT"))
    misspelt = good.drop(columns="MET").assign(Met=1.0)
    with pytest.raises(ValueError, match=r"misspelt\? \{'MET': 'Met'"):
        model.predict_frame(misspelt)
    with pytest.raises(ValueError, match=r"feature 'HT': expected numbers"):
        model.predict_frame(good.assign(HT=["a", "b"]))
    with pytest.raises(ValueError, match=r"feature 'MET': row 1 is nan"):
        model.predict_frame(good.assign(MET=[1.0, np.nan]))
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        model.predict_matrix(np.ones((2, 3)))
    raw = pd.DataFrame({"Jet_pt": [[1.0], ["x"]], "Jet_eta": [[0.0], [0.0]], "MET_pt": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"branch 'Jet_pt'"):
        model.predict_frame(raw)
    with pytest.raises(ValueError, match=r"branch 'MET_pt': expected numbers"):
        model.predict_frame(raw.assign(Jet_pt=[[1.0], [2.0]], MET_pt=["a", "b"]))


NO_SPARK_SCRIPT = """
import json, os, sys
if sys.argv[2] == "pyfunc":
    sys.modules["pyspark"] = None  # mlflow itself tries `import pyspark`; make it unavailable
    import mlflow.pyfunc
    model = mlflow.pyfunc.load_model(sys.argv[1])
    predict = model.predict
else:
    from sparkhep.scoring import load_scoring_model
    predict = load_scoring_model(sys.argv[1]).predict_frame
import pandas as pd
raw = pd.DataFrame(json.loads(sys.argv[3]))
features = pd.DataFrame(json.loads(sys.argv[4]))
children = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            name = open(f"/proc/{entry}/comm").read().strip()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            children.append(name)
print(json.dumps({
    "raw": list(map(float, predict(raw))),
    "features": list(map(float, predict(features))),
    "pyspark": sorted(m for m in sys.modules if m.split(".")[0] == "pyspark"
                      and sys.modules[m] is not None),
    "children": children,
}))
"""


@pytest.mark.parametrize("engine", ["gbt", "mlp", "xgboost"])
@pytest.mark.parametrize("loader", ["scoring", "pyfunc"])
def test_loading_and_scoring_import_no_pyspark_and_need_no_java(
    fitted, events, engine, loader, tmp_path
):
    directory, spark_p = fitted[engine]
    raw, features = events
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SPARK_HOME")}
    env["PATH"] = str(tmp_path)  # an empty directory: no java to be found
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'unused.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_SPARK_SCRIPT,
            str(directory / "mlflow"),
            loader,
            json.dumps(raw.slice(0, 20).to_pydict()),
            json.dumps(features[FEATURES].head(20).to_dict(orient="list")),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["pyspark"] == []
    assert "java" not in answer["children"]
    np.testing.assert_allclose(answer["features"], spark_p[:20], rtol=0, atol=TOLERANCE[engine])
    np.testing.assert_allclose(answer["raw"], spark_p[:20], rtol=0, atol=TOLERANCE[engine])


def test_model_directory_carries_spec_features_and_raw_form(fitted):
    root = fitted["mlp"][0] / "mlflow"
    assert FeatureSpec.from_dict(json.loads((root / "sparkhep/feature_spec.json").read_text()))
    assert json.loads((root / "sparkhep/features.json").read_text()) == {"features": FEATURES}
    raw = json.loads((root / "raw_input.json").read_text())
    assert [(b["name"], b["jagged"]) for b in raw["branches"]] == [
        ("Jet_pt", True),
        ("Jet_eta", True),
        ("MET_pt", False),
    ]
    assert len(raw["dataframe_records"]) == 2
    assert "| `Jet_pt` | list<item: float> | yes |" in (root / "raw_input.md").read_text()
    requirements = (root / "requirements.txt").read_text().split()
    assert any(r.startswith("pyspark==") for r in requirements)
    assert not any(r.startswith(("numba", "treelite", "xgboost")) for r in requirements)
    for engine, needed in (("gbt", "numba=="), ("xgboost", "xgboost-cpu==")):
        listed = (fitted[engine][0] / "mlflow/requirements.txt").read_text().split()
        assert any(r.startswith(needed) for r in listed)
