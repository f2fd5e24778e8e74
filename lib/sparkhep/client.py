"""A small client of ``sparkhep serve`` (and of any server speaking the same protocols).

    from sparkhep.client import ServingClient

    with ServingClient("http://127.0.0.1:8080", token="…") as client:
        p = client.predict(frame)                      # MLflow /invocations
        p = client.predict(x, protocol="v2", model="tthad")   # Open Inference Protocol V2

Events are a feature matrix (``numpy`` ``(N, n_features)``, signature order), a mapping of
column name → per-event values, or a pandas DataFrame; columns are the engineered features or
the raw branches (jagged ones as one list or array per event). They are sent in requests of at
most ``batch_size`` events and the predictions concatenated. A failed request raises
:class:`ServingError` carrying the server's message. Imports neither pyspark nor pandas.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

Protocol = Literal["mlflow", "v2"]
MODEL_HEADER = "X-Sparkhep-Model"


class ServingError(RuntimeError):
    """A request that failed: the HTTP status (``None`` when no answer came) and the message."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        super().__init__(f"{url}: HTTP {status}: {message}" if status else f"{url}: {message}")
        self.status = status
        self.message = message
        self.url = url


class ServingClient:
    """Client of the MLflow scoring protocol and of Open Inference Protocol V2.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8080``.
        token: bearer token sent with every request.
        timeout: seconds for connecting and for each answer (``http`` keeps its own).
        batch_size: most events per request.
        protocol: default protocol of :meth:`predict`.
        model: default model name (needed with several models; V2 asks the server otherwise).
        http: an ``httpx.Client`` to use instead of a new one (e.g. a test client).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        batch_size: int = 10_000,
        protocol: Protocol = "mlflow",
        model: str | None = None,
        http: Any = None,
    ) -> None:
        import httpx

        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size!r}")
        if protocol not in ("mlflow", "v2"):
            raise ValueError(f"protocol must be 'mlflow' or 'v2', got {protocol!r}")
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.protocol = protocol
        self.model = model
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._timeout = timeout

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (not that of a client given as ``http``)."""
        if self._own_http:
            self._http.close()

    def predict(
        self,
        events: Any,
        *,
        model: str | None = None,
        protocol: Protocol | None = None,
    ) -> np.ndarray:
        """P(signal) per event.

        Args:
            events: feature matrix, mapping of columns, or pandas DataFrame.
            model: the model name (default: the client's).
            protocol: ``"mlflow"`` or ``"v2"`` (default: the client's).

        Returns:
            float64 array, NaN where the server answered ``null``.

        Raises:
            ServingError: a request failed (the server's status and message).
        """
        protocol = protocol or self.protocol
        model = model or self.model
        batch = _as_batch(events)
        if protocol == "v2" and model is None:
            model = self._only_model()
        if batch.n == 0:
            return np.zeros(0, dtype=np.float64)
        parts = []
        for start in range(0, batch.n, self.batch_size):
            chunk = batch.slice(start, start + self.batch_size)
            if protocol == "mlflow":
                parts.append(self._mlflow(chunk, model))
            else:
                parts.append(self._v2(chunk, model))
        return np.concatenate(parts)

    def live(self) -> bool:
        """Whether ``/v2/health/live`` answers 200."""
        return self._request("GET", "/v2/health/live", check=False).status_code == 200

    def ready(self, model: str | None = None) -> bool:
        """Whether the server (or one model) is ready."""
        path = f"/v2/models/{model}/ready" if model else "/v2/health/ready"
        return self._request("GET", path, check=False).status_code == 200

    def metadata(self, model: str | None = None) -> dict[str, Any]:
        """The V2 model metadata (name, versions, platform, inputs, outputs)."""
        return self._request("GET", f"/v2/models/{model or self._only_model()}").json()

    def models(self) -> dict[str, str | None]:
        """Model name → version loaded, from ``/version``."""
        return self._request("GET", "/version").json()["models"]

    def _only_model(self) -> str:
        names = list(self.models())
        if len(names) != 1:
            raise ServingError(f"the server serves {names!r}; choose one with model=", url=self.url)
        return names[0]

    def _mlflow(self, batch: _Batch, model: str | None) -> np.ndarray:
        if batch.matrix is not None:
            payload: Any = {"inputs": batch.matrix.tolist()}
        else:
            payload = {"inputs": {name: _json_column(v) for name, v in batch.columns.items()}}
        params = {"model": model} if model else None
        answer = self._request("POST", "/invocations", body=payload, params=params).json()
        return _floats(answer.get("predictions"), self.url)

    def _v2(self, batch: _Batch, model: str) -> np.ndarray:
        if batch.matrix is not None:
            tensors = [
                {
                    "name": "features",
                    "datatype": "FP64",
                    "shape": list(batch.matrix.shape),
                    "data": batch.matrix.ravel().tolist(),
                }
            ]
        else:
            tensors = []
            for name, values in batch.columns.items():
                tensors += _v2_tensors(name, values)
        answer = self._request("POST", f"/v2/models/{model}/infer", body={"inputs": tensors})
        outputs = answer.json().get("outputs") or [{}]
        return _floats(outputs[0].get("data"), self.url)

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> Any:
        import httpx

        url = f"{self.url}{path}"
        content = None if body is None else json.dumps(body).encode()
        try:
            answer = self._http.request(
                method,
                url,
                content=content,
                params=params,
                headers=self._headers,
            )
        except httpx.TimeoutException as err:
            raise ServingError(f"no answer within {self._timeout} s ({err})", url=url) from err
        except httpx.TransportError as err:
            raise ServingError(f"request failed: {err}", url=url) from err
        if check and answer.status_code >= 400:
            raise ServingError(_message(answer), status=answer.status_code, url=url)
        return answer


class _Batch:
    """Events as a matrix or as columns (jagged ones as lists of per-event arrays)."""

    def __init__(
        self,
        n: int,
        matrix: np.ndarray | None = None,
        columns: dict[str, list[Any] | np.ndarray] | None = None,
    ) -> None:
        self.n = n
        self.matrix = matrix
        self.columns = columns or {}

    def slice(self, start: int, stop: int) -> _Batch:
        if self.matrix is not None:
            part = self.matrix[start:stop]
            return _Batch(len(part), matrix=part)
        columns = {name: values[start:stop] for name, values in self.columns.items()}
        return _Batch(min(stop, self.n) - start, columns=columns)


def _as_batch(events: Any) -> _Batch:
    if isinstance(events, np.ndarray):
        if events.ndim != 2:
            raise ValueError(f"a feature matrix must be 2-D (N, n_features), got {events.shape}")
        return _Batch(events.shape[0], matrix=np.asarray(events, dtype=np.float64))
    if hasattr(events, "to_dict") and hasattr(events, "columns"):  # a pandas DataFrame
        events = {str(name): events[name].to_numpy() for name in events.columns}
    if not isinstance(events, Mapping):
        raise TypeError(
            "events must be a feature matrix (numpy), a mapping of columns or a DataFrame, "
            f"got {type(events).__name__}"
        )
    columns: dict[str, list[Any] | np.ndarray] = {}
    for name, values in events.items():
        array = values if isinstance(values, np.ndarray) else None
        if array is not None and array.dtype != object and array.ndim == 1:
            columns[name] = array
        elif isinstance(values, np.ndarray | Sequence):
            columns[name] = list(values)
        else:
            raise TypeError(f"column {name!r}: expected a list or array of per-event values")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        sizes = {n: len(v) for n, v in columns.items()}
        raise ValueError(f"columns have different numbers of events: {sizes!r}")
    return _Batch(lengths.pop() if lengths else 0, columns=columns)


def _is_jagged(values: list[Any] | np.ndarray) -> bool:
    if isinstance(values, np.ndarray) and values.dtype != object:
        return False
    return any(isinstance(v, np.ndarray | list | tuple) for v in values)


def _json_column(values: list[Any] | np.ndarray) -> list[Any]:
    if _is_jagged(values):
        return [np.asarray(v, dtype=np.float64).tolist() for v in values]
    return np.asarray(values).tolist()


def _v2_tensors(name: str, values: list[Any] | np.ndarray) -> list[dict[str, Any]]:
    if _is_jagged(values):
        events = [np.asarray(v, dtype=np.float64).ravel() for v in values]
        flat = np.concatenate(events) if events else np.zeros(0)
        return [
            {"name": name, "datatype": "FP64", "shape": [len(flat)], "data": flat.tolist()},
            {
                "name": f"{name}__counts",
                "datatype": "INT64",
                "shape": [len(events)],
                "data": [len(e) for e in events],
            },
        ]
    array = np.asarray(values)
    datatype = "INT64" if array.dtype.kind in "iu" else "FP64"
    return [{"name": name, "datatype": datatype, "shape": [len(array)], "data": array.tolist()}]


def _floats(values: Any, url: str) -> np.ndarray:
    if not isinstance(values, list):
        raise ServingError(f"the answer holds no predictions: {values!r:.200}", url=url)
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _message(answer: Any) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text.strip() or answer.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if key in body:
                return str(body[key])
    return json.dumps(body)
