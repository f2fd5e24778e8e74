"""Compute features from raw event branches: vectorised numpy over Arrow arrays.

This is the only implementation of the features. Spark runs it over whole Arrow batches through
``mapInArrow`` (no per-row Python), and the server runs the very same function on the branches
of a request, so training and serving cannot disagree. It imports neither pyspark nor awkward.

Jagged branches arrive as Arrow list arrays; each is handled as (counts per event, flat values),
the layout NanoAOD itself uses. Missing objects, null lists and non-finite values become the
declared fill value, so no NaN or null ever reaches a ``VectorAssembler``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sparkhep.features.spec import CollectionFeatures, EventFeature, FeatureSpec

ArrowColumns = pa.RecordBatch | pa.Table


def compute_features(columns: ArrowColumns, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Compute every feature of ``spec`` for the events in ``columns``.

    Args:
        columns: a record batch or table holding at least ``spec.branches()``.
        spec: the features to compute.

    Returns:
        Feature name → float64 array with one value per event, in ``spec.feature_names()`` order.
    """
    _check_branches(columns, spec)
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def jagged(branch: str) -> tuple[np.ndarray, np.ndarray]:
        if branch not in cache:
            cache[branch] = _counts_and_values(columns.column(branch), branch)
        return cache[branch]

    out: dict[str, np.ndarray] = {}
    for block in spec.collections:
        out.update(_leading_objects(block, jagged))
    for feature in spec.event:
        out[feature.name] = _event_feature(feature, columns, jagged)
    return out


def _check_branches(columns: ArrowColumns, spec: FeatureSpec) -> None:
    present = set(columns.schema.names)
    missing = [b for b in spec.branches() if b not in present]
    if missing:
        raise KeyError(
            f"feature inputs need branches {missing!r}; the events have {sorted(present)!r}"
        )


def _counts_and_values(
    array: pa.Array | pa.ChunkedArray, branch: str
) -> tuple[np.ndarray, np.ndarray]:
    """(objects per event, flat float64 values) of a jagged branch; null lists count as empty."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], array.type)
    if not pa.types.is_list(array.type) and not pa.types.is_large_list(array.type):
        raise TypeError(
            f"branch {branch!r}: expected a jagged (list) column, got Arrow type {array.type}"
        )
    counts = pc.fill_null(pc.list_value_length(array), 0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(array).cast(pa.float64())
    values = flat.to_numpy(zero_copy_only=False)
    if flat.null_count:
        values = np.where(flat.is_null().to_numpy(zero_copy_only=False), np.nan, values)
    return counts, values


def _leading_objects(block: CollectionFeatures, jagged) -> dict[str, np.ndarray]:
    counts, order_values = jagged(block.branch(block.order_by))
    n_events = len(counts)
    event_index = np.repeat(np.arange(n_events), counts)
    # Events stay grouped (primary key), objects go in descending order within each event.
    order = np.lexsort((-np.nan_to_num(order_values, nan=-np.inf), event_index))
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    slot = np.arange(len(order)) - starts
    keep = slot < block.n
    rows, slots = event_index[keep], slot[keep]
    tables: dict[str, np.ndarray] = {}
    for name in block.fields:
        field_counts, values = jagged(block.branch(name))
        if not np.array_equal(field_counts, counts):
            raise ValueError(
                f"branches {block.branch(name)!r} and {block.branch(block.order_by)!r} have "
                "different numbers of objects in some events; a collection's branches must align"
            )
        table = np.full((n_events, block.n), block.fill_value, dtype=np.float64)
        table[rows, slots] = values[order][keep]
        table[~np.isfinite(table)] = block.fill_value
        tables[name] = table
    return {
        f"{block.prefix}{index + 1}_{name}": tables[name][:, index]
        for index in range(block.n)
        for name in block.fields
    }


def _event_feature(feature: EventFeature, columns: ArrowColumns, jagged) -> np.ndarray:
    if feature.kind == "branch":
        values = columns.column(str(feature.branch)).cast(pa.float64())
        array = values.to_numpy(zero_copy_only=False)
        return np.where(np.isfinite(array), array, 0.0)
    counts, values = jagged(f"{feature.collection}_{feature.field}")
    if feature.kind == "count":
        return counts.astype(np.float64)
    event_index = np.repeat(np.arange(len(counts)), counts)
    if feature.kind == "ht":
        weights = np.where(np.isfinite(values), values, 0.0)
    else:
        weights = (values > feature.working_point).astype(np.float64)
    return np.bincount(event_index, weights=weights, minlength=len(counts)).astype(np.float64)
