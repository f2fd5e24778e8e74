"""End to end: a real sparkhep model (MLlib GBT, two-flavor MLflow model) served over HTTP.

A tiny GBT is trained with the session ``spark`` on generated (SYNTHETIC) events, logged with
``sparkhep.registry.flavor`` and registered in a temporary SQLite store; the server loads it
as ``models:/serve-e2e@champion`` with the real numpy loader. Served scores must equal the
model's own ``predict_frame`` and Spark's ``probability[1]`` (to 1e-9), in both protocols and
both input forms; the CLI serves the same model from a directory over a socket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sparkhep.client import ServingClient, ServingError
from sparkhep.features.compute import compute_features
from sparkhep.features.spec import CollectionFeatures, EventFeature, FeatureSpec
from sparkhep.serve import create_app

pytestmark = pytest.mark.slow

NAME = "serve-e2e"
SPEC = FeatureSpec(
    collections=(
        CollectionFeatures(prefix="Jet", n=3, fields=("pt", "eta", "btagDeepB"), mask=False),
    ),
    event=(
        EventFeature(name="nJet", kind="count", collection="Jet"),
        EventFeature(name="HT", kind="ht", collection="Jet"),
        EventFeature(name="MET_pt", kind="branch", branch="MET_pt"),
    ),
)
FEATURES = SPEC.feature_names()
BRANCHES = SPEC.branches()  # Jet_pt, Jet_eta, Jet_btagDeepB, MET_pt


@dataclass(frozen=True)
class Served:
    uri: str
    model_dir: Path
    raw: pa.Table
    features: pd.DataFrame
    spark_p: np.ndarray


def generated_raw(n: int, kind: str, seed: int) -> pa.Table:
    import awkward as ak
    from sparkhep.generate import generate_events

    events = generate_events(n, kind=kind, seed=seed)
    columns = {b: pa.array(ak.to_list(events[b]), pa.list_(pa.float32())) for b in BRANCHES[:-1]}
    columns["MET_pt"] = pa.array(np.asarray(events["MET_pt"], dtype=np.float32))
    return pa.table(columns)


@pytest.fixture(scope="module")
def served(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import mlflow
    from mlflow import MlflowClient
    from pyspark.ml.functions import vector_to_array
    from sparkhep.config import ModelConfig
    from sparkhep.registry import flavor
    from sparkhep.train.pipeline import fit_pipeline

    root = tmp_path_factory.mktemp("serve_e2e")
    raw = pa.concat_tables(
        [generated_raw(200, "signal", seed=3), generated_raw(200, "background", seed=4)]
    )
    label = np.r_[np.ones(200), np.zeros(200)]
    features = pd.DataFrame(compute_features(raw, SPEC))[FEATURES]
    rows = features.assign(label=label, train_weight=1.0, is_validation=False)
    frame = spark.createDataFrame(rows)
    model = fit_pipeline(
        frame,
        FEATURES,
        ModelConfig(engine="gbt", params={"maxIter": 5, "maxDepth": 3, "seed": 1}),
        early_stopping=False,
    )
    spark_p = (
        model.transform(frame)
        .select(vector_to_array("probability")[1].alias("p"))
        .toPandas()["p"]
        .to_numpy()
    )
    uri = f"sqlite:///{root / 'mlruns.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.create_experiment("e2e", artifact_location=(root / "art").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            info = flavor.log_model(
                model,
                name="model",
                registered_model_name=NAME,
                feature_spec=SPEC,
                feature_names=FEATURES,
                raw_example=raw.slice(0, 3),
                input_example=features.head(3),
                engine="gbt",
            )
        client.set_registered_model_alias(NAME, "champion", info.registered_model_version)
        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=client.get_model_version_download_uri(
                    NAME, info.registered_model_version
                ),
                dst_path=str(root / "download"),
                tracking_uri=uri,
            )
        )
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert run.info.status in ("RUNNING", "FINISHED")
    yield Served(uri, model_dir, raw, features, spark_p)


@pytest.fixture(scope="module")
def http(served: Served) -> Iterator[TestClient]:
    app = create_app([f"models:/{NAME}@champion"], tracking_uri=served.uri)
    with TestClient(app) as client:
        yield client
    app.state.store.close()


def raw_columns(raw: pa.Table) -> dict[str, list]:
    return {name: raw.column(name).to_pylist() for name in BRANCHES}


def test_served_scores_equal_predict_frame_and_spark(served: Served, http: TestClient) -> None:
    from sparkhep.scoring import load_scoring_model

    model = load_scoring_model(served.model_dir)
    expected = model.predict_frame(served.features)
    np.testing.assert_allclose(expected, served.spark_p, rtol=0, atol=1e-9)
    client = ServingClient("http://testserver", batch_size=150, http=http)
    raw = raw_columns(served.raw)
    for protocol in ("mlflow", "v2"):
        by_features = client.predict(served.features, protocol=protocol)
        np.testing.assert_allclose(by_features, expected, rtol=0, atol=1e-12)
        by_raw = client.predict(raw, protocol=protocol)
        np.testing.assert_allclose(by_raw, expected, rtol=0, atol=1e-12)
    # jagged branches as BYTES tensors (one JSON list per event), first 5 events
    tensors = [
        {
            "name": name,
            "datatype": "BYTES" if name.startswith("Jet_") else "FP32",
            "shape": [5],
            "data": [json.dumps(v) if name.startswith("Jet_") else v for v in raw[name][:5]],
        }
        for name in BRANCHES
    ]
    answer = http.post(f"/v2/models/{NAME}/infer", json={"inputs": tensors}).json()
    assert answer["model_version"] == "1"
    np.testing.assert_allclose(answer["outputs"][0]["data"], expected[:5], rtol=0, atol=1e-12)


def test_real_model_metadata_and_errors(served: Served, http: TestClient) -> None:
    metadata = http.get(f"/v2/models/{NAME}").json()
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "sparkhep_gbt"
    assert [i["name"] for i in metadata["inputs"]] == FEATURES
    assert {i["datatype"] for i in metadata["inputs"]} == {"FP64"}
    assert metadata["parameters"]["raw_branches"] == BRANCHES
    one = served.features.head(1).to_dict(orient="list")
    one["HT"] = [float("nan")]  # the real scorer refuses non-finite features
    answer = http.post("/invocations", content=json.dumps({"inputs": one}))
    assert answer.status_code == 400
    assert answer.json()["message"] == (
        "feature 'HT': row 0 is nan; every feature value must be a finite number"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serves_a_model_directory(served: Served, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("e2e-token\n")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sparkhep.cli",
            "serve",
            f"tthad={served.model_dir}",
            "--port",
            str(port),
            "--token-file",
            str(token),
            "--poll-interval",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": served.uri},
    )
    try:
        client = ServingClient(f"http://127.0.0.1:{port}", token="e2e-token", timeout=5)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.live():
                    break
            except ServingError:
                time.sleep(0.2)
        assert process.poll() is None, process.communicate(timeout=10)
        predicted = client.predict(served.features.head(20), model="tthad")
        np.testing.assert_allclose(predicted, served.spark_p[:20], rtol=0, atol=1e-9)
        anonymous = ServingClient(f"http://127.0.0.1:{port}", timeout=5)
        with pytest.raises(ServingError) as caught:
            anonymous.predict(served.features.head(1))
        assert caught.value.status == 401
        client.close()
        anonymous.close()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_cli_reports_a_model_it_cannot_load(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sparkhep.cli", "serve", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert f"sparkhep serve: error: model 'missing' ({tmp_path / 'missing'}): " in done.stderr
    assert "FileNotFoundError: model 'missing': no model directory at" in done.stderr
