"""``sparkhep.client``: both protocols, batching, token, errors with the server's message."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sparkhep.client import ServingClient, ServingError
from sparkhep.serve import create_app
from test_serve_double import FEATURES, load_linear_model, sigmoid, write_linear_model

# (Jet1_pt, Jet2_pt, nJet, MET_pt) → sigmoid(0.01·Jet1 + 0.02·Jet2 - 0.5·nJet + 0.03·MET - 1)
ROWS = np.array(
    [
        [50.0, 30.0, 2.0, 20.0],
        [40.0, 0.0, 1.0, 10.0],
        [0.0, 0.0, 0.0, 0.0],
        [100.0, 50.0, 2.0, 0.0],
        [10.0, 10.0, 2.0, 100.0],
    ]
)
EXPECTED = [sigmoid(z) for z in (-0.3, -0.8, -1.0, 0.0, 1.3)]
# The same five events as raw branches (jets unordered; the model keeps the two leading).
RAW_JETS = [[30.0, 50.0], [40.0], [], [50.0, 100.0], [10.0, 10.0]]
RAW_MET = [20.0, 10.0, 0.0, 0.0, 100.0]


def approx(values: list[float]) -> object:
    return pytest.approx(values, rel=1e-12)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    model = write_linear_model(tmp_path_factory.mktemp("client") / "linear")
    app = create_app([str(model)], loader=load_linear_model, tracking_uri="x", token="tok")
    yield app
    app.state.store.close()


@pytest.fixture
def client(app: object) -> Iterator[ServingClient]:
    app.state.metrics.requests.clear()
    with ServingClient(
        "http://testserver", token="tok", batch_size=2, http=TestClient(app)
    ) as serving:
        yield serving


def invocations(app: object, status: int = 200) -> int:
    return app.state.metrics.requests[("/invocations", "POST", status)]


def test_matrix_in_batches(app: object, client: ServingClient) -> None:
    assert client.predict(ROWS).tolist() == approx(EXPECTED)
    assert invocations(app) == 3  # 5 events in requests of at most 2
    v2 = client.predict(ROWS, protocol="v2")
    assert v2.tolist() == approx(EXPECTED)
    assert app.state.metrics.requests[("/v2/models/{model}/infer", "POST", 200)] == 3


def test_columns_and_frames(client: ServingClient) -> None:
    columns = {name: ROWS[:, i] for i, name in enumerate(FEATURES)}
    frame = pd.DataFrame(columns)
    frame["nJet"] = frame["nJet"].astype("int64")  # INT64 tensor in V2
    for protocol in ("mlflow", "v2"):
        assert client.predict(columns, protocol=protocol).tolist() == approx(EXPECTED)
        assert client.predict(frame, protocol=protocol).tolist() == approx(EXPECTED)


def test_raw_branches(client: ServingClient) -> None:
    as_lists = {"Jet_pt": RAW_JETS, "MET_pt": RAW_MET}
    as_arrays = {"Jet_pt": [np.array(j, dtype=np.float32) for j in RAW_JETS], "MET_pt": RAW_MET}
    frame = pd.DataFrame({"Jet_pt": pd.Series(as_arrays["Jet_pt"]), "MET_pt": RAW_MET})
    for events in (as_lists, as_arrays, frame):
        for protocol in ("mlflow", "v2"):
            assert client.predict(events, protocol=protocol).tolist() == approx(EXPECTED)


def test_empty_input_sends_nothing(app: object, client: ServingClient) -> None:
    assert client.predict(np.zeros((0, 4))).tolist() == []
    assert invocations(app) == 0


def test_null_predictions_become_nan(client: ServingClient) -> None:
    rows = ROWS[:2].copy()
    rows[1, 0] = np.nan
    predicted = client.predict(rows)
    assert predicted[0] == pytest.approx(EXPECTED[0], rel=1e-12)
    assert np.isnan(predicted[1])


def test_server_messages_are_carried(client: ServingClient) -> None:
    with pytest.raises(ServingError) as caught:
        client.predict({"Jet1_pt": [1.0]})
    assert caught.value.status == 400
    assert caught.value.message.startswith("missing feature columns ['Jet2_pt', 'nJet', 'MET_pt']")
    with pytest.raises(ServingError) as caught:
        client.predict({"Jet_pt": [[1.0]], "MET_pt": ["x"]}, protocol="v2")
    assert (caught.value.status, caught.value.message) == (
        400,
        "tensor 'MET_pt': expected a number, got 'x' (element 0)",
    )
    with pytest.raises(ServingError) as caught:
        client.predict(ROWS, model="nope", protocol="v2")
    assert (caught.value.status, caught.value.message) == (
        404,
        "unknown model 'nope'; this server serves ['linear']",
    )
    assert str(caught.value) == (
        "http://testserver/v2/models/nope/infer: HTTP 404: "
        "unknown model 'nope'; this server serves ['linear']"
    )


def test_token_and_health(app: object, client: ServingClient) -> None:
    anonymous = ServingClient("http://testserver", http=TestClient(app))
    assert anonymous.live() and anonymous.ready()
    with pytest.raises(ServingError) as caught:
        anonymous.predict(ROWS)
    assert (caught.value.status, caught.value.message) == (
        401,
        "unauthorized: the request carries no bearer token",
    )
    assert client.models() == {"linear": None}
    assert client.ready("linear")
    assert not client.ready("nope")
    assert client.metadata()["inputs"][2] == {"name": "nJet", "datatype": "INT64", "shape": [-1]}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size must be ≥ 1, got 0"):
        ServingClient("http://127.0.0.1:1", batch_size=0)
    with pytest.raises(ValueError, match="protocol must be 'mlflow' or 'v2', got 'grpc'"):
        ServingClient("http://127.0.0.1:1", protocol="grpc")
    client = ServingClient("http://127.0.0.1:1")
    with pytest.raises(ValueError, match=r"must be 2-D \(N, n_features\), got \(4,\)"):
        client.predict(np.zeros(4))
    with pytest.raises(ValueError, match=r"different numbers of events: \{'a': 2, 'b': 1\}"):
        client.predict({"a": [1, 2], "b": [1]})
    client.close()


def test_timeout_and_refused_connection() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with (
            ServingClient(f"http://127.0.0.1:{port}", timeout=0.3) as silent,
            pytest.raises(ServingError) as caught,
        ):
            silent.predict(ROWS)
        assert caught.value.status is None
        assert caught.value.message.startswith("no answer within 0.3 s")
        assert time.monotonic() - started < 5
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    with (
        ServingClient(f"http://127.0.0.1:{closed_port}", timeout=2) as refused,
        pytest.raises(ServingError, match="request failed"),
    ):
        refused.predict(ROWS)


def test_over_a_real_socket(tmp_path: Path) -> None:
    import uvicorn

    model = write_linear_model(tmp_path / "linear")
    app = create_app([f"tthad={model}"], loader=load_linear_model, tracking_uri="x")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    try:
        with ServingClient(f"http://127.0.0.1:{port}", batch_size=3, model="tthad") as client:
            assert client.predict(ROWS).tolist() == approx(EXPECTED)
            assert client.predict(
                {"Jet_pt": RAW_JETS, "MET_pt": RAW_MET}, protocol="v2"
            ).tolist() == (approx(EXPECTED))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.store.close()
    assert not thread.is_alive()
