"""``sparkhep serve`` with models from an MLflow registry: versions, runs, aliases that move.

A temporary SQLite store holds one registered model ``linear`` with versions 1 (bias -1) and
2 (bias 0) of the linear test double, and a broken version 3 (no model file).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sparkhep.serve import ModelLoadError, create_app
from test_serve_double import load_linear_model, sigmoid, write_linear_model

ROW = [50.0, 30.0, 2.0, 20.0]  # w · x = 0.7
P_V1 = sigmoid(0.7 - 1.0)
P_V2 = sigmoid(0.7 + 0.0)
BODY = {"inputs": [ROW]}


@dataclass(frozen=True)
class Registry:
    uri: str
    run_id: str


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("serve", artifact_location=(root / "art").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(write_linear_model(root / "v1")), "v1")
    client.log_artifacts(run.info.run_id, str(write_linear_model(root / "v2", bias=0.0)), "v2")
    broken = root / "broken"
    broken.mkdir()
    (broken / "README").write_text("no linear.json here")
    client.log_artifacts(run.info.run_id, str(broken), "broken")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("linear")
    for path in ("v1", "v2", "broken"):
        client.create_model_version(
            "linear", f"{run.info.artifact_uri}/{path}", run_id=run.info.run_id
        )
    client.set_registered_model_alias("linear", "champion", "1")
    yield Registry(uri, run.info.run_id)


def move_alias(registry: Registry, version: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry.uri, registry_uri=registry.uri)
    client.set_registered_model_alias("linear", "champion", version)


def test_versions_and_runs(registry: Registry) -> None:
    app = create_app(
        ["one=models:/linear/1", "models:/linear/2", f"run=runs:/{registry.run_id}/v2"],
        loader=load_linear_model,
        tracking_uri=registry.uri,
    )
    client = TestClient(app)
    assert client.get("/version").json()["models"] == {"one": "1", "linear": "2", "run": None}
    for name, expected in (("one", P_V1), ("linear", P_V2), ("run", P_V2)):
        answer = client.post(f"/invocations?model={name}", json=BODY).json()
        assert answer == {"predictions": pytest.approx([expected], rel=1e-12)}, name
    assert client.get("/v2/models/one").json()["versions"] == ["1"]
    infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    answer = client.post("/v2/models/one/versions/1/infer", json=infer).json()
    assert answer["model_version"] == "1"
    assert answer["outputs"][0]["data"] == pytest.approx([P_V1], rel=1e-12)
    assert client.post("/v2/models/one/versions/2/infer", json=infer).status_code == 404
    assert 'sparkhep_model_version{model="linear",uri="models:/linear/2"} 2' in (
        client.get("/metrics").text.splitlines()
    )
    app.state.store.close()


def test_unknown_model_fails_at_start(registry: Registry) -> None:
    with pytest.raises(ModelLoadError, match=r"model 'nope' \(models:/nope@champion\): "):
        create_app(["models:/nope@champion"], loader=load_linear_model, tracking_uri=registry.uri)


def test_failed_reload_keeps_the_old_model(registry: Registry) -> None:
    move_alias(registry, "1")
    app = create_app(
        ["models:/linear@champion"], loader=load_linear_model, tracking_uri=registry.uri
    )
    store = app.state.store
    try:
        assert store.poll() == []  # alias unchanged
        move_alias(registry, "3")
        assert store.poll() == []
        assert (store.reloads["linear"], store.reload_failures["linear"]) == (0, 1)
        assert store.get("linear").version == "1"
        answer = TestClient(app).post("/invocations", json=BODY).json()
        assert answer == {"predictions": pytest.approx([P_V1], rel=1e-12)}
        move_alias(registry, "2")
        assert store.poll() == ["linear"]
        assert store.get("linear").version == "2"
    finally:
        move_alias(registry, "1")
        store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_alias_move_reloads_without_failed_requests(registry: Registry) -> None:
    import uvicorn

    move_alias(registry, "1")
    app = create_app(
        ["models:/linear@champion"],
        loader=load_linear_model,
        tracking_uri=registry.uri,
        poll_interval=0.2,
    )
    first_path = app.state.store.get("linear").path
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    assert server.started
    seen: list[float] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.post("/invocations", json=BODY).json()["predictions"] == (
                pytest.approx([P_V1], rel=1e-12)
            )
            move_alias(registry, "2")
            deadline = time.monotonic() + 30
            for _ in range(100_000):
                answer = http.post("/invocations", json=BODY)
                assert answer.status_code == 200, answer.text
                seen.append(answer.json()["predictions"][0])
                if seen[-1] == pytest.approx(P_V2, rel=1e-12) or time.monotonic() > deadline:
                    break
            metrics = http.get("/metrics").text.splitlines()
            version = http.get("/version").json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        move_alias(registry, "1")
        app.state.store.close()
    assert seen[-1] == pytest.approx(P_V2, rel=1e-12), "the alias move was not picked up in 30 s"
    assert all(p in (pytest.approx(P_V1, rel=1e-12), pytest.approx(P_V2, rel=1e-12)) for p in seen)
    assert version["models"] == {"linear": "2"}
    assert 'sparkhep_model_version{model="linear",uri="models:/linear@champion"} 2' in metrics
    assert [m for m in metrics if "reload" in m and not m.startswith("#")] == [
        'sparkhep_model_reloads_total{model="linear"} 1',
        'sparkhep_model_reload_failures_total{model="linear"} 0',
    ]
    assert not Path(first_path).exists()  # the old download is removed after the swap


SERVE_FROM_REGISTRY_WITHOUT_PYSPARK = """
import json, sys
class NoPyspark:  # what an environment with only the serve extra looks like
    def find_spec(self, name, path=None, target=None):
        if name == "pyspark" or name.startswith(("pyspark.", "py4j")):
            raise ImportError(f"no {{name}} in the serving environment")
sys.meta_path.insert(0, NoPyspark())
sys.path.insert(0, {tests!r})
from fastapi.testclient import TestClient
import sparkhep.serve, sparkhep.client
from test_serve_double import load_linear_model
app = sparkhep.serve.create_app(
    ["models:/linear@champion"], loader=load_linear_model, tracking_uri={uri!r})
client = sparkhep.client.ServingClient("http://testserver", http=TestClient(app))
print(json.dumps(client.predict({{"Jet_pt": [[30.0, 50.0]], "MET_pt": [20.0]}}).tolist()))
app.state.store.close()
print("pyspark" in sys.modules, "py4j" in sys.modules)
"""


def test_registry_serving_needs_no_pyspark(registry: Registry) -> None:
    move_alias(registry, "1")
    script = SERVE_FROM_REGISTRY_WITHOUT_PYSPARK.format(
        tests=str(Path(__file__).parent), uri=registry.uri
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions, modules = done.stdout.strip().splitlines()[-2:]
    assert json.loads(predictions) == pytest.approx([P_V1], rel=1e-12)
    assert modules == "False False"
