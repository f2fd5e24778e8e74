"""``sparkhep serve``: both protocols, errors, metrics, token, body limit, a real socket.

The model is the linear stand-in of ``test_serve_double`` (its raw path is the real feature
code), so every expected probability is computed by hand: P = sigmoid(w · x + b) with
w = (0.01, 0.02, -0.5, 0.03) on (Jet1_pt, Jet2_pt, nJet, MET_pt) and b = -1.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sparkhep.serve import ModelSource, create_app
from sparkhep.serve.app import endpoint_label
from test_serve_double import FEATURES, load_linear_model, sigmoid, write_linear_model

# Event A: features (50, 30, 2, 20) → z = 0.5 + 0.6 - 1.0 + 0.6 - 1 = -0.3
# Event B: features (40, 0, 1, 10)  → z = 0.4 + 0 - 0.5 + 0.3 - 1 = -0.8
P_A = sigmoid(-0.3)
P_B = sigmoid(-0.8)
ROW_A = [50.0, 30.0, 2.0, 20.0]
ROW_B = [40.0, 0.0, 1.0, 10.0]
# Raw events: A has jets 30, 50 (unordered on purpose); B has one jet of 40.
RAW = {"Jet_pt": [[30.0, 50.0], [40.0]], "MET_pt": [20.0, 10.0]}


def approx(values: list[float]) -> object:
    return pytest.approx(values, rel=1e-12)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_linear_model(tmp_path_factory.mktemp("serve") / "linear")


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    app = create_app([str(model_dir)], loader=load_linear_model, tracking_uri="sqlite:///x.db")
    with TestClient(app) as test_client:
        yield test_client
    app.state.store.close()


def invoke(client: TestClient, body: object, **kwargs: object) -> tuple[int, dict]:
    answer = client.post("/invocations", content=json.dumps(body), **kwargs)
    return answer.status_code, answer.json()


# -- model sources ----------------------------------------------------------------------------


def test_model_sources_parse_names_aliases_and_versions() -> None:
    assert ModelSource.parse("models:/tthad@champion") == ModelSource(
        uri="models:/tthad@champion", name="tthad", registered_name="tthad", alias="champion"
    )
    assert ModelSource.parse("models:/tthad/3") == ModelSource(
        uri="models:/tthad/3", name="tthad", registered_name="tthad", version="3"
    )
    assert ModelSource.parse("prod=models:/tthad@champion").name == "prod"
    assert ModelSource.parse("runs:/abc123/model") == ModelSource(
        uri="runs:/abc123/model", name="model"
    )
    assert ModelSource.parse("fast=runs:/abc123/model").name == "fast"
    local = ModelSource.parse("/tmp/models/tthad_v2/")
    assert (local.name, local.is_local) == ("tthad_v2", True)
    assert ModelSource.parse("file:///tmp/m").is_local
    assert not ModelSource.parse("runs:/abc/model").is_local
    with pytest.raises(ValueError, match="expected models:/<name>@<alias> or"):
        ModelSource.parse("models:/tthad")


def test_duplicate_names_are_refused(model_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"model names \['linear'\] are given more than once"):
        create_app([str(model_dir), str(model_dir)], loader=load_linear_model, tracking_uri="x")


def test_endpoint_labels_are_route_templates() -> None:
    assert endpoint_label("/invocations") == "/invocations"
    assert endpoint_label("/v2/models/tthad/infer") == "/v2/models/{model}/infer"
    assert endpoint_label("/v2/models/tthad/versions/3/ready") == (
        "/v2/models/{model}/versions/{version}/ready"
    )
    assert endpoint_label("/v2/models/tthad") == "/v2/models/{model}"
    assert endpoint_label("/v2/models/tthad/explain") == "other"
    assert endpoint_label("/favicon.ico") == "other"


# -- MLflow scoring protocol ------------------------------------------------------------------


def test_health_and_version(client: TestClient) -> None:
    for path in ("/ping", "/health"):
        answer = client.get(path)
        assert (answer.status_code, answer.text) == (200, "\n")
    assert client.get("/version").json() == {"sparkhep": "0.1.0", "models": {"linear": None}}


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": FEATURES, "data": [ROW_A, ROW_B]}},
        {"dataframe_split": {"index": [7, 8], "columns": FEATURES, "data": [ROW_A, ROW_B]}},
        {"dataframe_split": {"data": [ROW_A, ROW_B]}},
        {"dataframe_records": [dict(zip(FEATURES, r, strict=True)) for r in (ROW_A, ROW_B)]},
        {"instances": [dict(zip(FEATURES, r, strict=True)) for r in (ROW_A, ROW_B)]},
        {"instances": [ROW_A, ROW_B]},
        {"inputs": {n: [a, b] for n, a, b in zip(FEATURES, ROW_A, ROW_B, strict=True)}},
        {"inputs": [ROW_A, ROW_B]},
        {"inputs": [ROW_A, ROW_B], "params": {"ignored": 1}},
        # columns in another order, an extra column, ints for floats, 2.0 for an integer
        {
            "dataframe_split": {
                "columns": [*FEATURES[::-1], "run"],
                "data": [[20, 2.0, 30, 50, 1], [10, 1, 0, 40, 1]],
            }
        },
    ],
    ids=[
        "split",
        "split-index",
        "split-no-columns",
        "records",
        "instances-records",
        "instances-rows",
        "inputs-columns",
        "inputs-rows",
        "params",
        "reordered-ints",
    ],
)
def test_invocations_formats(client: TestClient, body: dict) -> None:
    status, answer = invoke(client, body)
    assert status == 200, answer
    assert answer["predictions"] == approx([P_A, P_B])


def test_invocations_single_event_forms(client: TestClient) -> None:
    assert invoke(client, {"inputs": dict(zip(FEATURES, ROW_A, strict=True))})[1] == {
        "predictions": approx([P_A])
    }
    assert invoke(client, {"instances": ROW_A})[1]["predictions"] == approx([P_A])


def test_invocations_raw_branches(client: TestClient) -> None:
    assert invoke(client, {"inputs": RAW})[1]["predictions"] == approx([P_A, P_B])
    records = [{"Jet_pt": [30, 50], "MET_pt": 20}, {"Jet_pt": [40.0], "MET_pt": 10}]
    assert invoke(client, {"dataframe_records": records})[1]["predictions"] == approx([P_A, P_B])
    split = {"columns": ["MET_pt", "Jet_pt"], "data": [[20, [30, 50]], [10, [40]]]}
    assert invoke(client, {"dataframe_split": split})[1]["predictions"] == approx([P_A, P_B])
    # no jets at all: (0, 0, 0, 20) → z = 0.6 - 1
    no_jets = {"inputs": {"Jet_pt": [[]], "MET_pt": [20.0]}}
    assert invoke(client, no_jets)[1]["predictions"] == approx([sigmoid(-0.4)])


def test_invocations_empty_batch(client: TestClient) -> None:
    assert invoke(client, {"dataframe_split": {"columns": FEATURES, "data": []}}) == (
        200,
        {"predictions": []},
    )


def test_nan_and_inf_predictions_are_null(client: TestClient) -> None:
    answer = client.post(
        "/invocations",
        content='{"inputs": [[NaN, 30, 2, 20], [50, 30, 2, 20], [Infinity, 0, 0, -Infinity]]}',
    )
    assert answer.status_code == 200
    assert answer.text.startswith('{"predictions":[null,0.42555748318834')
    assert answer.json()["predictions"][0] is None
    assert answer.json()["predictions"][2] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "malformed JSON in the request body: Expecting property name enclosed"),
        ("", "malformed JSON in the request body: Expecting value: line 1 column 1 (char 0)"),
        (
            "[1, 2]",
            "the body must be a JSON object with one of ['dataframe_split', "
            "'dataframe_records', 'instances', 'inputs'], got list",
        ),
        (
            '{"data": [1]}',
            "the body must hold exactly one of ['dataframe_split', "
            "'dataframe_records', 'instances', 'inputs'], got keys ['data']",
        ),
        ('{"inputs": [[1,2,3,4]], "instances": [[1,2,3,4]]}', "the body must hold exactly one"),
        (
            json.dumps({"inputs": {"Jet1_pt": [1.0], "Jet2_pt": [1.0], "MET_pt": [1.0]}}),
            "missing feature columns ['nJet'] (the model's features: ['Jet1_pt', 'Jet2_pt', "
            "'nJet', 'MET_pt']), or send the raw branches ['Jet_pt', 'MET_pt']",
        ),
        (
            json.dumps({"inputs": {"Jet_ptt": [[1.0]], "MET_pt": [1.0]}}),
            "missing raw branches ['Jet_pt'] (the model reads ['Jet_pt', 'MET_pt']); "
            "unknown columns ['Jet_ptt']",
        ),
        (
            json.dumps(
                {"inputs": {**dict(zip(FEATURES, [[1]] * 4, strict=True)), "MET_pt": ["x"]}}
            ),
            "column 'MET_pt': expected a number, got 'x' (event 0)",
        ),
        (
            json.dumps(
                {"inputs": {**dict(zip(FEATURES, [[1]] * 4, strict=True)), "Jet1_pt": [True]}}
            ),
            "column 'Jet1_pt': expected a number, got True (event 0)",
        ),
        (
            json.dumps(
                {"inputs": {**dict(zip(FEATURES, [[1, 2]] * 4, strict=True)), "Jet2_pt": [1, None]}}
            ),
            "column 'Jet2_pt': expected a number, got None (event 1)",
        ),
        (
            json.dumps({"inputs": {**dict(zip(FEATURES, [[1]] * 4, strict=True)), "nJet": [2.5]}}),
            "column 'nJet': expected an integer, got 2.5 (event 0)",
        ),
        (
            json.dumps({"inputs": {**dict(zip(FEATURES, [[1]] * 4, strict=True)), "nJet": [1, 2]}}),
            "column 'nJet' has 2 events but 'Jet1_pt' has 1",
        ),
        (
            json.dumps({"inputs": [[1, 2, 3]]}),
            "inputs row 0: expected a list of 4 numbers (the features in signature order "
            "['Jet1_pt', 'Jet2_pt', 'nJet', 'MET_pt']), got [1, 2, 3]",
        ),
        (
            json.dumps({"instances": [[1, 2, "3", 4]]}),
            "instances row 0, column 'nJet': expected a number, got '3'",
        ),
        (
            json.dumps({"dataframe_split": {"columns": FEATURES, "data": [[1, 2, 3]]}}),
            "dataframe_split.data row 0: expected a list of 4 values (one per column), "
            "got [1, 2, 3]",
        ),
        (
            json.dumps({"dataframe_records": [dict(zip(FEATURES, ROW_A, strict=True)), {"a": 1}]}),
            "dataframe_records record 1: columns differ from record 0 (missing ['Jet1_pt', "
            "'Jet2_pt', 'nJet', 'MET_pt'], extra ['a'])",
        ),
        (
            json.dumps({"inputs": {"Jet_pt": [[1.0, "a"], [2.0]], "MET_pt": [1, 2]}}),
            "branch 'Jet_pt': expected a number, got 'a' (event 0)",
        ),
        (
            json.dumps({"inputs": {"Jet_pt": [[1.0], 2.0], "MET_pt": [1, 2]}}),
            "branch 'Jet_pt': expected a number per event (flat branch) or a list of numbers per "
            "event (jagged branch), got 2.0 (event 1)",
        ),
        (
            json.dumps({"inputs": {"Jet_pt": [1.0], "MET_pt": [1]}}),
            "branch 'Jet_pt': expected a jagged (list) column, got a flat one",
        ),
        (
            json.dumps({"inputs": {"Jet_pt": [1.0, 2.0], "MET_pt": 3}}),
            "inputs: column 'Jet_pt' holds a list of events but 'MET_pt' a single value (3)",
        ),
    ],
)
def test_invocations_bad_requests(client: TestClient, body: str, message: str) -> None:
    answer = client.post("/invocations", content=body)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert answer.json()["message"].startswith(message), answer.json()["message"]


def test_unknown_model_is_404(client: TestClient) -> None:
    answer = client.post("/invocations?model=other", content=json.dumps({"inputs": [ROW_A]}))
    assert answer.status_code == 404
    assert answer.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "unknown model 'other'; this server serves ['linear']",
    }


def test_several_models_need_a_choice(tmp_path: Path) -> None:
    other = write_linear_model(tmp_path / "other", weights=[0.0, 0.0, 0.0, 0.0], bias=1.0)
    app = create_app(
        [str(write_linear_model(tmp_path / "linear")), f"second={other}"],
        loader=load_linear_model,
        tracking_uri="x",
    )
    client = TestClient(app)
    body = json.dumps({"inputs": [ROW_A]})
    answer = client.post("/invocations", content=body)
    assert answer.status_code == 400
    assert answer.json()["message"] == (
        "this server serves several models ['linear', 'second']: choose one with "
        "?model=<name> or the header x-sparkhep-model: <name>"
    )
    assert client.post("/invocations?model=linear", content=body).json() == {
        "predictions": approx([P_A])
    }
    chosen = client.post("/invocations", content=body, headers={"X-Sparkhep-Model": "second"})
    assert chosen.json() == {"predictions": approx([sigmoid(1.0)])}
    infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW_A}]}
    assert client.post("/v2/models/second/infer", json=infer).json()["outputs"][0]["data"] == (
        approx([sigmoid(1.0)])
    )
    app.state.store.close()


# -- Open Inference Protocol V2 ---------------------------------------------------------------


def test_v2_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json() == {"name": "sparkhep", "version": "0.1.0", "extensions": []}
    assert client.get("/v2/models/linear/ready").json() == {"name": "linear", "ready": True}
    metadata = client.get("/v2/models/linear").json()
    assert metadata == {
        "name": "linear",
        "versions": [],
        "platform": "sparkhep_linear",
        "inputs": [
            {"name": "Jet1_pt", "datatype": "FP64", "shape": [-1]},
            {"name": "Jet2_pt", "datatype": "FP64", "shape": [-1]},
            {"name": "nJet", "datatype": "INT64", "shape": [-1]},
            {"name": "MET_pt", "datatype": "FP64", "shape": [-1]},
        ],
        "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1]}],
        "parameters": {
            "uri": metadata["parameters"]["uri"],
            "engine": "linear",
            "feature_matrix_shape": [-1, 4],
            "raw_branches": ["Jet_pt", "MET_pt"],
            "jagged_counts_suffix": "__counts",
        },
    }
    assert metadata["parameters"]["uri"].endswith("/linear")
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/linear/versions/1"):
        answer = client.get(path)
        assert answer.status_code == 404, path
    assert client.get("/v2/models/nope").json() == {
        "error": "unknown model 'nope'; this server serves ['linear']"
    }
    assert client.get("/v2/models/linear/versions/1").json() == {
        "error": "model 'linear' has version None loaded, not '1'"
    }


def tensor(name: str, shape: list[int], datatype: str, data: list) -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


@pytest.mark.parametrize(
    "inputs",
    [
        [tensor("features", [2, 4], "FP64", [*ROW_A, *ROW_B])],
        [tensor("features", [2, 4], "FP64", [ROW_A, ROW_B])],
        [tensor(n, [2], "FP64", [a, b]) for n, a, b in zip(FEATURES, ROW_A, ROW_B, strict=True)],
        [
            tensor(n, [2, 1], "FP64", [[a], [b]])
            for n, a, b in zip(FEATURES, ROW_A, ROW_B, strict=True)
        ],
        [
            *(
                tensor(n, [2], "FP64", [a, b])
                for n, a, b in zip(FEATURES[:2], ROW_A[:2], ROW_B[:2], strict=True)
            ),
            tensor("nJet", [2], "INT64", [2, 1]),
            tensor("MET_pt", [2], "INT32", [20, 10]),
        ],
        [
            tensor("Jet_pt", [2], "BYTES", ["[30, 50]", "[40.0]"]),
            tensor("MET_pt", [2], "FP64", [20, 10]),
        ],
        [
            tensor("Jet_pt", [3], "FP64", [30, 50, 40]),
            tensor("Jet_pt__counts", [2], "INT32", [2, 1]),
            tensor("MET_pt", [2], "FP64", [20, 10]),
        ],
    ],
    ids=[
        "matrix-flat",
        "matrix-nested",
        "per-feature",
        "per-feature-2d",
        "int-tensors",
        "raw-bytes",
        "raw-counts",
    ],
)
def test_v2_infer_forms(client: TestClient, inputs: list[dict]) -> None:
    answer = client.post("/v2/models/linear/infer", json={"id": "req-1", "inputs": inputs})
    assert answer.status_code == 200, answer.json()
    assert answer.json() == {
        "model_name": "linear",
        "id": "req-1",
        "outputs": [
            {"name": "probability", "datatype": "FP64", "shape": [2], "data": approx([P_A, P_B])}
        ],
    }


def test_v2_fp32_data_is_rounded_to_float32(client: TestClient) -> None:
    row = [50.1, 30.0, 2.0, 20.3]
    inputs = [tensor("x", [1, 4], "FP32", row)]
    answer = client.post(
        "/v2/models/linear/infer", json={"inputs": inputs, "outputs": [{"name": "probability"}]}
    )
    as_float32 = np.array(row, dtype=np.float32).astype(np.float64)
    expected = sigmoid(float(as_float32 @ np.array([0.01, 0.02, -0.5, 0.03])) - 1.0)
    assert answer.json()["outputs"][0]["data"] == approx([expected])
    assert expected != pytest.approx(sigmoid(0.501 + 0.6 - 1.0 + 0.609 - 1.0), rel=1e-12)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": []}, "'inputs': expected a non-empty list of tensors"),
        (
            {"inputs": [tensor("x", [2, 4], "FP64", ROW_A)]},
            "tensor 'x': shape [2, 4] holds 8 elements, 'data' has 4",
        ),
        (
            {"inputs": [tensor("x", [1, 3], "FP64", ROW_A[:3])]},
            "tensor 'x': shape [1, 3], expected [N, 4] (the features in signature order "
            "['Jet1_pt', 'Jet2_pt', 'nJet', 'MET_pt'])",
        ),
        (
            {"inputs": [tensor("x", [1, 4], "INT64", [1, 2, 3, 4])]},
            "tensor 'x': expected datatype FP64 or FP32, got INT64",
        ),
        (
            {"inputs": [tensor("x", [1, 4], "FP64", [1, 2, "3", 4])]},
            "tensor 'x': expected a number, got '3' (element 2)",
        ),
        ({"inputs": [tensor("x", [1, 4], "FP99", ROW_A)]}, "tensor 'x': unknown datatype 'FP99'"),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64"}]},
            "tensor 'x': 'data' must be a list, got None",
        ),
        (
            {"inputs": [tensor("x", [-1, 4], "FP64", ROW_A)]},
            "tensor 'x': 'shape' must be a list of sizes ≥ 0, got [-1, 4]",
        ),
        (
            {
                "inputs": [
                    *(tensor(n, [1], "FP64", [1.0]) for n in FEATURES[:3]),
                    tensor("MET_pt", [1], "BOOL", [True]),
                ]
            },
            "tensor 'MET_pt': expected a numeric datatype (FP64, FP32, INT64, …), got BOOL",
        ),
        (
            {
                "inputs": [
                    *(tensor(n, [1], "FP64", [1.0]) for n in FEATURES[:2]),
                    tensor("nJet", [1], "INT64", [1.5]),
                    tensor("MET_pt", [1], "FP64", [1]),
                ]
            },
            "column 'nJet': expected an integer, got 1.5 (event 0)",
        ),
        (
            {
                "inputs": [
                    *(tensor(n, [1], "FP64", [1.0]) for n in FEATURES[:3]),
                    tensor("MET_pt", [2], "FP64", [1, 2]),
                ]
            },
            "tensor 'MET_pt' has 2 events but tensor 'Jet1_pt' has 1",
        ),
        (
            {
                "inputs": [
                    tensor("Jet1_pt", [1, 2], "FP64", [1, 2]),
                    tensor("nJet", [1], "FP64", [1]),
                ]
            },
            "tensor 'Jet1_pt': shape [1, 2], expected [N] (one value per event)",
        ),
        (
            {
                "inputs": [
                    tensor("Jet_pt", [3], "FP64", [30, 50, 40]),
                    tensor("Jet_pt__counts", [2], "INT32", [2, 2]),
                    tensor("MET_pt", [2], "FP64", [20, 10]),
                ]
            },
            "tensor 'Jet_pt__counts': counts sum to 4, but tensor 'Jet_pt' holds 3 values",
        ),
        (
            {
                "inputs": [
                    tensor("Jet_pt", [3], "FP64", [30, 50, 40]),
                    tensor("Jet_pt__counts", [2], "FP32", [2, 1]),
                    tensor("MET_pt", [2], "FP64", [20, 10]),
                ]
            },
            "tensor 'Jet_pt__counts': expected an integer datatype (INT32, INT64, …), got FP32",
        ),
        (
            {
                "inputs": [
                    tensor("Jet_eta__counts", [1], "INT32", [1]),
                    tensor("MET_pt", [1], "FP64", [20]),
                ]
            },
            "tensor 'Jet_eta__counts': no values tensor 'Jet_eta' for these counts",
        ),
        (
            {
                "inputs": [
                    tensor("Jet_pt", [1], "BYTES", ["[30, "]),
                    tensor("MET_pt", [1], "FP64", [20]),
                ]
            },
            "tensor 'Jet_pt' element 0: expected a JSON list, got '[30, '",
        ),
        (
            {
                "inputs": [
                    tensor("Jet_pt", [1], "BYTES", ['["a"]']),
                    tensor("MET_pt", [1], "FP64", [20]),
                ]
            },
            "tensor 'Jet_pt': expected a number, got 'a' (event 0)",
        ),
        (
            {"inputs": [tensor("x", [1, 4], "FP64", ROW_A), tensor("x", [1], "FP64", [1])]},
            "tensors ['x'] are given more than once",
        ),
        (
            {"inputs": [tensor("x", [1, 4], "FP64", ROW_A)], "outputs": [{"name": "score"}]},
            "outputs ['score']: this model has one output, 'probability'",
        ),
        (
            {"inputs": [tensor("MET_pt", [1], "FP64", [1.0])]},
            "missing raw branches ['Jet_pt'] (the model reads ['Jet_pt', 'MET_pt'])",
        ),
        (
            {
                "inputs": [
                    tensor("Jet1_pt", [1], "FP64", [1.0]),
                    tensor("Jet2_pt", [1], "FP64", [1]),
                ]
            },
            "missing feature columns ['nJet', 'MET_pt'] (the model's features: ['Jet1_pt', "
            "'Jet2_pt', 'nJet', 'MET_pt']), or send the raw branches ['Jet_pt', 'MET_pt']",
        ),
    ],
)
def test_v2_bad_requests(client: TestClient, body: dict, message: str) -> None:
    answer = client.post("/v2/models/linear/infer", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(message), answer.json()["error"]


def test_v2_malformed_json_and_unknown_model(client: TestClient) -> None:
    answer = client.post("/v2/models/linear/infer", content="{")
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("malformed JSON in the request body")
    answer = client.post("/v2/models/nope/infer", json={"inputs": []})
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "unknown model 'nope'; this server serves ['linear']"},
    )


def test_v2_nan_output_is_null(client: TestClient) -> None:
    answer = client.post(
        "/v2/models/linear/infer",
        content='{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", '
        '"data": [NaN, 1, 1, 1]}]}',
    )
    assert answer.status_code == 200
    assert answer.json()["outputs"][0]["data"] == [None]


# -- metrics, token, body limit ---------------------------------------------------------------


def test_metrics(model_dir: Path) -> None:
    app = create_app([str(model_dir)], loader=load_linear_model, tracking_uri="x")
    client = TestClient(app)
    client.post("/invocations", json={"inputs": [ROW_A, ROW_B]})
    client.post("/invocations", json={"inputs": [ROW_A]})
    client.post("/invocations", json={"inputs": [[1]]})
    client.post("/v2/models/linear/infer", json={"inputs": [tensor("x", [1, 4], "FP64", ROW_A)]})
    client.get("/ping")
    text = client.get("/metrics").text
    lines = text.splitlines()
    for line in [
        "# TYPE sparkhep_requests_total counter",
        'sparkhep_requests_total{endpoint="/invocations",method="POST",status="200"} 2',
        'sparkhep_requests_total{endpoint="/invocations",method="POST",status="400"} 1',
        'sparkhep_requests_total{endpoint="/v2/models/{model}/infer",method="POST",status="200"} 1',
        'sparkhep_requests_total{endpoint="/ping",method="GET",status="200"} 1',
        "# TYPE sparkhep_request_duration_seconds histogram",
        'sparkhep_request_duration_seconds_bucket{endpoint="/invocations",le="+Inf"} 3',
        'sparkhep_request_duration_seconds_count{endpoint="/invocations"} 3',
        'sparkhep_events_scored_total{model="linear"} 4',
        f'sparkhep_model_version{{model="linear",uri="{model_dir}"}} 0',
        'sparkhep_model_reloads_total{model="linear"} 0',
    ]:
        assert line in lines, line
    buckets = [
        int(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith('sparkhep_request_duration_seconds_bucket{endpoint="/invocations"')
    ]
    assert len(buckets) == 14
    assert buckets == sorted(buckets)
    assert client.get("/metrics").headers["content-type"] == (
        "text/plain; version=0.0.4; charset=utf-8"
    )
    app.state.store.close()


def test_bearer_token(model_dir: Path) -> None:
    app = create_app([str(model_dir)], loader=load_linear_model, tracking_uri="x", token="s3cret")
    client = TestClient(app)
    for path in ("/ping", "/health", "/v2/health/live", "/v2/health/ready"):
        assert client.get(path).status_code == 200, path
    body = {"inputs": [ROW_A]}
    answer = client.post("/invocations", json=body)
    assert (answer.status_code, answer.json()) == (
        401,
        {
            "error_code": "UNAUTHENTICATED",
            "message": "unauthorized: the request carries no bearer token",
        },
    )
    assert answer.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/invocations", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.json()["message"] == "unauthorized: the request carries a wrong bearer token"
    good = {"Authorization": "Bearer s3cret"}
    assert client.post("/invocations", json=body, headers=good).json() == {
        "predictions": approx([P_A])
    }
    for path in ("/metrics", "/version", "/v2/models/linear"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=good).status_code == 200, path
    v2 = client.get("/v2/models/linear")
    assert v2.json() == {"error": "unauthorized: the request carries no bearer token"}
    app.state.store.close()


def test_body_limit(model_dir: Path) -> None:
    app = create_app(
        [str(model_dir)], loader=load_linear_model, tracking_uri="x", max_body_bytes=100
    )
    client = TestClient(app)
    small = json.dumps({"inputs": [ROW_A]})
    assert len(small) < 100
    assert client.post("/invocations", content=small).status_code == 200
    large = json.dumps({"inputs": [ROW_A] * 10})
    answer = client.post("/invocations", content=large)
    assert (answer.status_code, answer.json()) == (
        413,
        {
            "error_code": "REQUEST_LIMIT_EXCEEDED",
            "message": "the request body is larger than the limit of 100 bytes",
        },
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield large[:60].encode()
        yield large[60:].encode()

    answer = client.post("/v2/models/linear/infer", content=chunks())
    assert (answer.status_code, answer.json()) == (
        413,
        {"error": "the request body is larger than the limit of 100 bytes"},
    )
    app.state.store.close()


# -- a real socket, and no pyspark -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def running_server(model_dir: Path) -> Iterator[str]:
    import uvicorn

    app = create_app([str(model_dir)], loader=load_linear_model, tracking_uri="x")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    assert server.started, "uvicorn did not start within 20 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.store.close()
    assert not thread.is_alive()


def test_real_socket(running_server: str) -> None:
    import httpx

    with httpx.Client(base_url=running_server, timeout=10) as http:
        assert http.get("/ping").status_code == 200
        answer = http.post("/invocations", json={"inputs": RAW})
        assert answer.json() == {"predictions": approx([P_A, P_B])}
        answer = http.post("/v2/models/linear/infer", content=b"x" * 10)
        assert answer.status_code == 400
        assert 'sparkhep_events_scored_total{model="linear"} 2' in http.get("/metrics").text


SERVE_WITHOUT_PYSPARK = """
import sys, threading, time, socket
sys.path.insert(0, {tests!r})
import uvicorn
import sparkhep.serve, sparkhep.client
from test_serve_double import load_linear_model

app = sparkhep.serve.create_app([{model!r}], loader=load_linear_model, tracking_uri="x")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
thread = threading.Thread(target=server.run, daemon=True); thread.start()
deadline = time.monotonic() + 20
while not server.started and time.monotonic() < deadline:
    time.sleep(0.02)
client = sparkhep.client.ServingClient(f"http://127.0.0.1:{{port}}", timeout=10)
print(client.predict({{"Jet_pt": [[30.0, 50.0]], "MET_pt": [20.0]}}).tolist())
server.should_exit = True; thread.join(10)
print("pyspark" in sys.modules, "py4j" in sys.modules)
"""


def test_serving_path_imports_no_pyspark(model_dir: Path) -> None:
    script = SERVE_WITHOUT_PYSPARK.format(tests=str(Path(__file__).parent), model=str(model_dir))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    predictions, modules = done.stdout.strip().splitlines()
    assert json.loads(predictions) == approx([P_A])
    assert modules == "False False"


def test_json_numbers_turn_non_finite_values_into_null() -> None:
    from sparkhep.serve.inputs import json_numbers

    assert json_numbers(np.array([0.5, np.nan, np.inf, -np.inf])) == [0.5, None, None, None]
