"""Request bodies → numpy: the MLflow scoring formats and Open Inference Protocol V2 tensors.

Both protocols end in the same place: a mapping of column name → per-event values, scored by
:func:`score_columns` either as the engineered features (signature order) or as raw event
branches that the model's own feature code turns into features. Values are checked once, with
set-of-types tests that run at C speed, and converted with a single ``np.array`` call per
block, so a one-event request costs a few microseconds here and no pandas is involved.

Every problem is an :class:`InputError` whose message names the field (column, tensor, record)
and says what was expected; the server answers it with HTTP 400.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
COUNTS_SUFFIX = "__counts"
NUMBER_TYPES = frozenset({int, float})
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
INT_DATATYPES = frozenset({f"{s}INT{b}" for s in ("", "U") for b in (8, 16, 32, 64)})


class InputError(ValueError):
    """A request the model cannot score; the message names the offending field."""


class Scorer(Protocol):
    """What the server needs of a model (``sparkhep.scoring.ScoringModel``)."""

    feature_names: list[str]
    raw_branches: list[str]

    def predict_matrix(self, x: np.ndarray) -> np.ndarray: ...

    def features_from_raw(self, table: pa.Table) -> np.ndarray: ...


@dataclass(frozen=True)
class Jagged:
    """A jagged column in NanoAOD layout: objects per event and the flat object values."""

    counts: np.ndarray
    values: np.ndarray


Column = Sequence[Any] | np.ndarray | Jagged


@dataclass(frozen=True)
class Batch:
    """Events of one request: either a ready feature matrix or named columns."""

    n_events: int
    matrix: np.ndarray | None = None
    columns: Mapping[str, Column] | None = None


def score(model: Scorer, batch: Batch, *, integer_columns: frozenset[str]) -> np.ndarray:
    """P(signal) per event of ``batch``.

    Args:
        model: the scorer.
        batch: the parsed request.
        integer_columns: signature columns declared as integers (integral values only).

    Returns:
        float64 array of length ``batch.n_events``.
    """
    if batch.matrix is not None:
        _check_matrix_integers(batch.matrix, model.feature_names, integer_columns)
        matrix = batch.matrix
    else:
        matrix = features_matrix(model, batch.columns or {}, integer_columns=integer_columns)
    if matrix.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(model.predict_matrix(matrix), dtype=np.float64)


def features_matrix(
    model: Scorer, columns: Mapping[str, Column], *, integer_columns: frozenset[str]
) -> np.ndarray:
    """The ``(N, n_features)`` matrix from feature columns, or from raw branches.

    The engineered features win when all of them are present; otherwise every raw branch must
    be. Extra columns (event ids, weights) are ignored.
    """
    features = model.feature_names
    if all(name in columns for name in features):
        blocks = [_flat(name, columns[name], integer=name in integer_columns) for name in features]
        _check_lengths(dict(zip(features, blocks, strict=True)))
        return np.stack(blocks, axis=1)
    branches = model.raw_branches
    if branches and all(name in columns for name in branches):
        arrays = {name: _arrow_column(name, columns[name]) for name in branches}
        _check_lengths(arrays)
        try:
            return np.asarray(model.features_from_raw(pa.table(arrays)), dtype=np.float64)
        except (KeyError, TypeError) as err:
            raise InputError(str(err.args[0] if err.args else err)) from err
    raise InputError(_missing_message(columns, features, branches))


def _missing_message(columns: Iterable[str], features: list[str], branches: list[str]) -> str:
    present = set(columns)
    missing_features = [f for f in features if f not in present]
    missing_branches = [b for b in branches if b not in present]
    unknown = sorted(present - set(features) - set(branches))
    # Report the form the client seems to have meant: more of its columns present, or as many
    # and fewer missing.
    overlap_features = len(features) - len(missing_features)
    overlap_branches = len(branches) - len(missing_branches)
    closer_raw = bool(branches) and (
        overlap_branches > overlap_features
        or (overlap_branches == overlap_features and len(missing_branches) < len(missing_features))
    )
    if closer_raw:
        text = f"missing raw branches {missing_branches!r} (the model reads {branches!r})"
    else:
        text = f"missing feature columns {missing_features!r} (the model's features: {features!r})"
    if branches and not closer_raw:
        text += f", or send the raw branches {branches!r}"
    if unknown:
        text += f"; unknown columns {unknown!r}"
    return text


def _check_lengths(blocks: Mapping[str, np.ndarray | pa.Array]) -> None:
    lengths = {name: len(block) for name, block in blocks.items()}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        other = next(n for n, length in lengths.items() if length != lengths[first])
        raise InputError(
            f"column {other!r} has {lengths[other]} events but {first!r} has {lengths[first]}"
        )


def _flat(name: str, values: Column, *, integer: bool) -> np.ndarray:
    """One number per event, as float64; ints and integral floats for integer columns."""
    if isinstance(values, Jagged):
        raise InputError(f"column {name!r}: expected one number per event, got a jagged column")
    array = values if isinstance(values, np.ndarray) else _numbers(values, name)
    if integer:
        _check_integral(array, name)
    return array


def _numbers(values: Sequence[Any], name: str) -> np.ndarray:
    """Numbers (JSON ints or floats, not booleans, strings or null) as float64."""
    if not isinstance(values, list | tuple):
        raise InputError(f"column {name!r}: expected a list of numbers, got {values!r}")
    types = set(map(type, values))
    if not types <= NUMBER_TYPES:
        index, bad = next((i, v) for i, v in enumerate(values) if type(v) not in NUMBER_TYPES)
        raise InputError(f"column {name!r}: expected a number, got {bad!r} (event {index})")
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError as err:
        raise InputError(f"column {name!r}: a value is too large for a float64") from err


def _check_integral(array: np.ndarray, name: str) -> None:
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(array) & (array == np.round(array)))
    if bad.any():
        index = int(np.argmax(bad))
        raise InputError(
            f"column {name!r}: expected an integer, got {float(array[index])!r} (event {index})"
        )


def _check_matrix_integers(
    matrix: np.ndarray, features: list[str], integer_columns: frozenset[str]
) -> None:
    for position, name in enumerate(features):
        if name in integer_columns:
            _check_integral(matrix[:, position], name)


def _arrow_column(name: str, values: Column) -> pa.Array:
    """A raw branch: flat (one number per event) or jagged (a list of numbers per event)."""
    if isinstance(values, Jagged):
        return _list_array(values.counts, values.values)
    if isinstance(values, np.ndarray):
        return pa.array(values)
    if not isinstance(values, list | tuple):
        raise InputError(f"branch {name!r}: expected a list of per-event values, got {values!r}")
    types = set(map(type, values))
    if types <= NUMBER_TYPES:
        return pa.array(_numbers(values, name))
    if types == {list}:
        jagged = _jagged_lists(name, values, what="branch")
        return _list_array(jagged.counts, jagged.values)
    first_is_list = type(values[0]) is list
    index, bad = next(
        (i, v)
        for i, v in enumerate(values)
        if (type(v) is list) != first_is_list or type(v) not in NUMBER_TYPES | {list}
    )
    raise InputError(
        f"branch {name!r}: expected a number per event (flat branch) or a list of numbers per "
        f"event (jagged branch), got {bad!r} (event {index})"
    )


def _jagged_lists(name: str, events: Sequence[list[Any]], *, what: str) -> Jagged:
    """Per-event lists of numbers → counts and flat float64 values."""
    counts = np.fromiter(map(len, events), dtype=np.int64, count=len(events))
    flat = list(chain.from_iterable(events))
    if not set(map(type, flat)) <= NUMBER_TYPES:
        position, bad = next((i, v) for i, v in enumerate(flat) if type(v) not in NUMBER_TYPES)
        event = int(np.searchsorted(np.cumsum(counts), position, side="right"))
        raise InputError(f"{what} {name!r}: expected a number, got {bad!r} (event {event})")
    values = _numbers(flat, name) if flat else np.zeros(0, dtype=np.float64)
    return Jagged(counts, values)


def _list_array(counts: np.ndarray, values: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.float64()))


# -- MLflow scoring protocol ------------------------------------------------------------------


def parse_mlflow(body: Any, feature_names: list[str]) -> Batch:
    """A body of ``POST /invocations``, as mlflow's scoring server accepts them.

    ``dataframe_split`` (``columns`` + ``data`` rows; without ``columns`` the rows are in
    signature order), ``dataframe_records`` (a list of ``{column: value}``), ``instances`` and
    ``inputs`` (a ``{column: [values]}`` mapping, a list of records, or a list of rows in
    signature order). Exactly one of them; ``params`` is accepted and ignored.
    """
    if not isinstance(body, dict):
        raise InputError(
            f"the body must be a JSON object with one of {list(MLFLOW_FORMATS)!r}, "
            f"got {type(body).__name__}"
        )
    keys = [key for key in MLFLOW_FORMATS if key in body]
    if len(keys) != 1:
        raise InputError(
            f"the body must hold exactly one of {list(MLFLOW_FORMATS)!r}, got keys {list(body)!r}"
        )
    key = keys[0]
    data = body[key]
    if key == "dataframe_split":
        return _split(data, feature_names)
    if key == "dataframe_records":
        if not isinstance(data, list):
            raise InputError(f"dataframe_records: expected a list of records, got {data!r:.80}")
        return _records(data, key)
    if isinstance(data, dict):
        return _columnar(data, key)
    if isinstance(data, list) and data and all(type(r) is dict for r in data):
        return _records(data, key)
    if isinstance(data, list):
        return _rows(data, feature_names, key)
    raise InputError(f"{key}: expected an object of columns or a list, got {data!r:.80}")


def _split(data: Any, feature_names: list[str]) -> Batch:
    if not isinstance(data, dict) or "data" not in data:
        raise InputError("dataframe_split: expected an object with 'columns' and 'data'")
    rows = data["data"]
    if "columns" not in data:
        return _rows(rows, feature_names, "dataframe_split.data")
    columns = data["columns"]
    if not isinstance(columns, list) or not all(type(c) is str for c in columns):
        raise InputError(f"dataframe_split.columns: expected a list of names, got {columns!r:.80}")
    if not isinstance(rows, list):
        raise InputError(f"dataframe_split.data: expected a list of rows, got {rows!r:.80}")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InputError(
                f"dataframe_split.data row {index}: expected a list of {len(columns)} values "
                f"(one per column), got {row!r:.80}"
            )
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return Batch(n_events=len(rows), columns=dict(zip(columns, map(list, transposed), strict=True)))


def _records(records: list[Any], key: str) -> Batch:
    if not records:
        return Batch(n_events=0, columns={})
    names = list(records[0]) if isinstance(records[0], dict) else []
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(f"{key} record {index}: expected an object, got {record!r:.80}")
        if record.keys() != columns.keys():
            missing = [n for n in names if n not in record]
            extra = [n for n in record if n not in columns]
            raise InputError(
                f"{key} record {index}: columns differ from record 0 "
                f"(missing {missing!r}, extra {extra!r})"
            )
        for name, value in record.items():
            columns[name].append(value)
    return Batch(n_events=len(records), columns=columns)


def _columnar(data: dict[str, Any], key: str) -> Batch:
    listed = [name for name, values in data.items() if isinstance(values, list)]
    if not listed:  # one event given as {column: value}
        return Batch(n_events=1, columns={name: [value] for name, value in data.items()})
    if len(listed) != len(data):
        single = next(name for name in data if name not in listed)
        raise InputError(
            f"{key}: column {listed[0]!r} holds a list of events but {single!r} a single value "
            f"({data[single]!r:.40}); give every column as a list with one value per event"
        )
    return Batch(n_events=len(data[listed[0]]), columns=data)


def _rows(rows: Any, feature_names: list[str], key: str) -> Batch:
    n_features = len(feature_names)
    if not isinstance(rows, list):
        raise InputError(f"{key}: expected a list of rows, got {rows!r:.80}")
    if rows and type(rows[0]) is not list:  # one event as a flat list of features
        rows = [rows]
    for index, row in enumerate(rows):
        if type(row) is not list or len(row) != n_features:
            raise InputError(
                f"{key} row {index}: expected a list of {n_features} numbers (the features in "
                f"signature order {feature_names!r}), got {row!r:.80}"
            )
    flat = list(chain.from_iterable(rows))
    if not set(map(type, flat)) <= NUMBER_TYPES:
        position, bad = next((i, v) for i, v in enumerate(flat) if type(v) not in NUMBER_TYPES)
        row, column = divmod(position, n_features)
        raise InputError(
            f"{key} row {row}, column {feature_names[column]!r}: expected a number, got {bad!r}"
        )
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), n_features)
    return Batch(n_events=len(rows), matrix=matrix)


# -- Open Inference Protocol V2 ---------------------------------------------------------------


def parse_v2(body: Any, feature_names: list[str]) -> Batch:
    """The ``inputs`` of a V2 inference request.

    Accepted forms: one FP tensor ``[N, n_features]`` (signature order); one ``[N]`` tensor per
    feature, named as in the signature; or one tensor per raw branch, flat ones ``[N]``, jagged
    ones either as ``BYTES`` ``[N]`` (each element a JSON list) or as the flat object values
    ``<branch>`` (shape ``[n_objects]``) with a companion ``<branch>__counts`` integer tensor
    ``[N]``. ``data`` may be flat or nested; its element count must match ``shape``. FP32 data
    is rounded to float32 first, as the same values read from a float32 ROOT branch would be.
    """
    if not isinstance(body, dict):
        raise InputError(f"the body must be a JSON object, got {type(body).__name__}")
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InputError("'inputs': expected a non-empty list of tensors")
    parsed = [_tensor(t, i) for i, t in enumerate(tensors)]
    names = [t.name for t in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"tensors {duplicates!r} are given more than once")
    if len(parsed) == 1 and len(parsed[0].shape) == 2:
        return _v2_matrix(parsed[0], feature_names)
    counts = {t.name[: -len(COUNTS_SUFFIX)]: t for t in parsed if t.name.endswith(COUNTS_SUFFIX)}
    columns: dict[str, Column] = {}
    for tensor in parsed:
        if tensor.name.endswith(COUNTS_SUFFIX):
            if tensor.name[: -len(COUNTS_SUFFIX)] not in names:
                raise InputError(
                    f"tensor {tensor.name!r}: no values tensor "
                    f"{tensor.name[: -len(COUNTS_SUFFIX)]!r} for these counts"
                )
            continue
        if tensor.name in counts:
            columns[tensor.name] = _v2_jagged(tensor, counts[tensor.name])
        elif tensor.datatype == "BYTES":
            columns[tensor.name] = _v2_bytes(tensor)
        else:
            columns[tensor.name] = _v2_flat(tensor)
    lengths = {n: len(c.counts) if isinstance(c, Jagged) else len(c) for n, c in columns.items()}
    first = next(iter(lengths))
    for name, length in lengths.items():
        if length != lengths[first]:
            raise InputError(
                f"tensor {name!r} has {length} events but tensor {first!r} has {lengths[first]}"
            )
    return Batch(n_events=lengths[first], columns=columns)


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: list[Any]


def _tensor(tensor: Any, index: int) -> _Tensor:
    if not isinstance(tensor, dict):
        raise InputError(f"inputs[{index}]: expected a tensor object, got {tensor!r:.80}")
    name = tensor.get("name")
    if type(name) is not str:
        raise InputError(f"inputs[{index}]: 'name' must be a string, got {name!r}")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(s) is int and s >= 0 for s in shape)
    ):
        raise InputError(f"tensor {name!r}: 'shape' must be a list of sizes ≥ 0, got {shape!r}")
    datatype = tensor.get("datatype")
    if datatype not in FLOAT_DATATYPES | INT_DATATYPES | {"BYTES", "BOOL"}:
        raise InputError(f"tensor {name!r}: unknown datatype {datatype!r}")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise InputError(f"tensor {name!r}: 'data' must be a list, got {data!r:.80}")
    if list in set(map(type, data)):
        data = _flatten(data)
    if len(data) != math.prod(shape):
        raise InputError(
            f"tensor {name!r}: shape {shape!r} holds {math.prod(shape)} elements, "
            f"'data' has {len(data)}"
        )
    return _Tensor(name, tuple(shape), datatype, data)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _v2_numbers(tensor: _Tensor) -> np.ndarray:
    if tensor.datatype not in FLOAT_DATATYPES | INT_DATATYPES:
        raise InputError(
            f"tensor {tensor.name!r}: expected a numeric datatype (FP64, FP32, INT64, …), "
            f"got {tensor.datatype}"
        )
    types = set(map(type, tensor.data))
    if not types <= NUMBER_TYPES:
        index, bad = next((i, v) for i, v in enumerate(tensor.data) if type(v) not in NUMBER_TYPES)
        raise InputError(
            f"tensor {tensor.name!r}: expected a number, got {bad!r} (element {index})"
        )
    try:
        array = np.array(tensor.data, dtype=np.float64)
    except OverflowError as err:
        raise InputError(f"tensor {tensor.name!r}: a value is too large for a float64") from err
    if tensor.datatype in INT_DATATYPES:
        _check_integral(array, tensor.name)
    elif tensor.datatype == "FP32":
        array = array.astype(np.float32).astype(np.float64)
    elif tensor.datatype == "FP16":
        array = array.astype(np.float16).astype(np.float64)
    return array


def _v2_matrix(tensor: _Tensor, feature_names: list[str]) -> Batch:
    n_features = len(feature_names)
    if tensor.shape[1] != n_features:
        raise InputError(
            f"tensor {tensor.name!r}: shape {list(tensor.shape)!r}, expected [N, {n_features}] "
            f"(the features in signature order {feature_names!r})"
        )
    if tensor.datatype not in FLOAT_DATATYPES:
        raise InputError(
            f"tensor {tensor.name!r}: expected datatype FP64 or FP32, got {tensor.datatype}"
        )
    matrix = _v2_numbers(tensor).reshape(tensor.shape)
    return Batch(n_events=tensor.shape[0], matrix=matrix)


def _event_axis(tensor: _Tensor) -> int:
    if len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1):
        return tensor.shape[0]
    raise InputError(
        f"tensor {tensor.name!r}: shape {list(tensor.shape)!r}, expected [N] (one value per "
        "event), or one tensor [N, n_features] alone"
    )


def _v2_flat(tensor: _Tensor) -> np.ndarray:
    _event_axis(tensor)
    return _v2_numbers(tensor)


def _v2_bytes(tensor: _Tensor) -> Jagged:
    _event_axis(tensor)
    events = []
    for index, element in enumerate(tensor.data):
        try:
            element = json.loads(element) if type(element) is str else element
        except ValueError as err:
            raise InputError(
                f"tensor {tensor.name!r} element {index}: expected a JSON list, got {element!r:.80}"
            ) from err
        if type(element) is not list:
            raise InputError(
                f"tensor {tensor.name!r} element {index}: expected a JSON list of numbers, "
                f"got {element!r:.80}"
            )
        events.append(element)
    return _jagged_lists(tensor.name, events, what="tensor")


def _v2_jagged(values: _Tensor, counts_tensor: _Tensor) -> Jagged:
    if counts_tensor.datatype not in INT_DATATYPES:
        raise InputError(
            f"tensor {counts_tensor.name!r}: expected an integer datatype (INT32, INT64, …), "
            f"got {counts_tensor.datatype}"
        )
    _event_axis(counts_tensor)
    if len(values.shape) != 1:
        raise InputError(
            f"tensor {values.name!r}: shape {list(values.shape)!r}, expected [n_objects] "
            f"(the flat values that {counts_tensor.name!r} splits into events)"
        )
    counts = _v2_numbers(counts_tensor)
    if (counts < 0).any():
        raise InputError(f"tensor {counts_tensor.name!r}: counts must be ≥ 0")
    if int(counts.sum()) != values.shape[0]:
        raise InputError(
            f"tensor {counts_tensor.name!r}: counts sum to {int(counts.sum())}, but tensor "
            f"{values.name!r} holds {values.shape[0]} values"
        )
    return Jagged(counts.astype(np.int64), _v2_numbers(values))


# -- responses --------------------------------------------------------------------------------


def json_numbers(values: np.ndarray) -> list[float | None]:
    """``values`` as a JSON-ready list with NaN and ±inf as ``None`` (JSON ``null``)."""
    listed = values.tolist()
    if not np.isfinite(values).all():
        listed = [v if math.isfinite(v) else None for v in listed]
    return listed
