"""Compute features from raw event branches: vectorised numpy over Arrow arrays.

This is the only implementation of the features. Spark runs it over whole Arrow batches through
``mapInArrow`` (no per-row Python), and the server runs the very same function on the branches
of a request, so training and serving cannot disagree. It imports neither pyspark nor awkward.

Jagged branches arrive as Arrow list arrays; each is handled as (counts per event, flat values),
the layout NanoAOD itself uses. Object selections are boolean masks over the flat values.
Missing objects, null lists and non-finite values become the declared fill value, so no NaN or
null ever reaches a ``VectorAssembler``, and an event with fewer objects than asked for never
raises.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sparkhep.features import expression
from sparkhep.features.spec import FOUR_VECTOR, CollectionFeatures, EventFeature, FeatureSpec

ArrowColumns = pa.RecordBatch | pa.Table
TOP_MASS = 172.5
W_MASS = 80.4


def compute_features(columns: ArrowColumns, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Compute every feature of ``spec`` for the events in ``columns``.

    Args:
        columns: a record batch or table holding at least ``spec.branches()``.
        spec: the features to compute.

    Returns:
        Feature name → finite float64 array with one value per event, in
        ``spec.feature_names()`` order.
    """
    _check_branches(columns, spec)
    events = _Events(columns)
    out: dict[str, np.ndarray] = {}
    # Non-finite intermediate values are expected (padding, inf inputs) and become fill values.
    with np.errstate(all="ignore"):
        for block in spec.collections:
            out.update(_leading_objects(block, events))
        for feature in spec.event:
            out[feature.name] = _event_feature(feature, events)
    return out


def _check_branches(columns: ArrowColumns, spec: FeatureSpec) -> None:
    present = set(columns.schema.names)
    missing = [b for b in spec.branches() if b not in present]
    if missing:
        raise KeyError(
            f"feature inputs need branches {missing!r}; the events have {sorted(present)!r}"
        )


class _Events:
    """The branches of one batch, each converted to numpy once."""

    def __init__(self, columns: ArrowColumns) -> None:
        self.columns = columns
        self.n = columns.num_rows
        self.cache: dict[str, expression.Value] = {}

    def value(self, branch: str) -> expression.Value:
        """A flat branch on the event level, a jagged one on the object level (float64)."""
        if branch not in self.cache:
            self.cache[branch] = _to_value(self.columns.column(branch), branch)
        return self.cache[branch]

    def jagged(self, branch: str) -> tuple[np.ndarray, np.ndarray]:
        value = self.value(branch)
        if value.counts is None:
            raise TypeError(f"branch {branch!r}: expected a jagged (list) column, got a flat one")
        return value.counts, value.data

    def objects(
        self, collection: str, fields: list[str], *, order_by: str, n: int, selection: str | None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The leading ``n`` selected objects, ordered by ``order_by`` descending.

        Returns:
            (field → (events x n) array with NaN for padding, (events x n) bool: real object).
        """
        order_branch = f"{collection}_{order_by}"
        counts, order_values = self.jagged(order_branch)
        event_index = np.repeat(np.arange(self.n), counts)
        keep_object = self.selected(collection, selection, counts)
        rows = event_index[keep_object]
        selected_counts = np.bincount(rows, minlength=self.n)
        # Events stay grouped (primary key), objects go in descending order within each event.
        order = np.lexsort((-np.nan_to_num(order_values[keep_object], nan=-np.inf), rows))
        starts = np.repeat(np.cumsum(selected_counts) - selected_counts, selected_counts)
        slot = np.arange(len(order)) - starts
        in_slot = slot < n
        rows, slots = rows[in_slot], slot[in_slot]
        tables = {}
        for name in fields:
            branch = f"{collection}_{name}"
            field_counts, values = self.jagged(branch)
            if not np.array_equal(field_counts, counts):
                raise ValueError(
                    f"branches {branch!r} and {order_branch!r} have different numbers of "
                    "objects in some events; a collection's branches must align"
                )
            table = np.full((self.n, n), np.nan)
            table[rows, slots] = values[keep_object][order][in_slot]
            tables[name] = table
        real = np.zeros((self.n, n), dtype=bool)
        real[rows, slots] = True
        return tables, real

    def selected(self, collection: str, selection: str | None, counts: np.ndarray) -> np.ndarray:
        """Bool per object of ``collection``: passes ``selection`` (all when there is none)."""
        if not selection:
            return np.ones(int(counts.sum()), dtype=bool)

        def resolve(name: str) -> expression.Value:
            value = self.value(f"{collection}_{name}")
            if value.counts is None or not np.array_equal(value.counts, counts):
                raise ValueError(
                    f"selection {selection!r}: {collection}_{name} is not a field of the "
                    f"collection {collection!r} (same number of objects per event)"
                )
            return value

        result = expression.evaluate(selection, resolve)
        if result.counts is None:
            return np.broadcast_to(result.data.astype(bool), (int(counts.sum()),)).copy()
        return result.data.astype(bool)


def _to_value(array: pa.Array | pa.ChunkedArray, branch: str) -> expression.Value:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], array.type)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        counts = pc.fill_null(pc.list_value_length(array), 0).to_numpy().astype(np.int64)
        return expression.Value(_float_values(pc.list_flatten(array)), counts)
    if pa.types.is_nested(array.type):
        raise TypeError(f"branch {branch!r}: expected numbers or a list, got {array.type}")
    return expression.Value(_float_values(array))


def _float_values(array: pa.Array) -> np.ndarray:
    """float64 values with nulls as NaN."""
    values = array.cast(pa.float64())
    out = values.to_numpy(zero_copy_only=False)
    if values.null_count:
        out = np.where(values.is_null().to_numpy(zero_copy_only=False), np.nan, out)
    return out


def _finite(values: np.ndarray, fill: float) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, fill)


def _leading_objects(block: CollectionFeatures, events: _Events) -> dict[str, np.ndarray]:
    tables, real = events.objects(
        block.prefix,
        list(block.fields),
        order_by=block.order_by,
        n=block.n,
        selection=block.selection,
    )
    out = {}
    for index in range(block.n):
        for name in block.fields:
            out[f"{block.prefix}{index + 1}_{name}"] = _finite(
                tables[name][:, index], block.fill_value
            )
        if block.mask:
            out[f"{block.prefix}{index + 1}_mask"] = real[:, index].astype(np.float64)
    return out


def _event_feature(feature: EventFeature, events: _Events) -> np.ndarray:
    kind, fill = feature.kind, feature.fill_value
    if kind == "branch":
        value = events.value(str(feature.branch))
        if value.counts is not None:
            raise TypeError(
                f"event feature {feature.name!r}: branch {feature.branch!r} is jagged; "
                "use kind = 'expr' with a reduction such as max(...)"
            )
        return _finite(value.data, fill)
    if kind == "expr":
        result = expression.evaluate(str(feature.expression), events.value)
        if result.counts is not None:
            raise ValueError(
                f"event feature {feature.name!r}: {feature.expression!r} gives one value per "
                "object; reduce it with sum/max/min/mean/count"
            )
        return _finite(np.broadcast_to(result.data, (events.n,)), fill)
    collection = str(feature.collection)
    if kind in ("count", "ht", "nbtag"):
        counts, values = events.jagged(f"{collection}_{'pt' if kind != 'nbtag' else feature.field}")
        keep = events.selected(collection, feature.selection, counts)
        event_index = np.repeat(np.arange(events.n), counts)[keep]
        if kind == "count":
            weights = None
        elif kind == "ht":
            weights = _finite(values[keep], 0.0)
        else:
            weights = (values[keep] > feature.working_point).astype(np.float64)
        return np.bincount(event_index, weights=weights, minlength=events.n).astype(np.float64)
    if kind in ("top_mass", "w_mass"):
        top, w = top_candidate(events, feature)
        return _finite(top if kind == "top_mass" else w, fill)
    return _finite(_dr_bb(events, feature), fill)


def top_candidate(events: _Events, feature: EventFeature) -> tuple[np.ndarray, np.ndarray]:
    """Hadronic top candidate among the ``max_objects`` leading selected objects.

    The three-object combination whose invariant mass is closest to ``TOP_MASS``, and within it
    the pair whose mass is closest to ``W_MASS``; NaN for events with fewer than three objects.

    Returns:
        (trijet mass, dijet mass), one value per event.
    """
    tables, real = events.objects(
        str(feature.collection),
        list(FOUR_VECTOR),
        order_by="pt",
        n=feature.max_objects,
        selection=feature.selection,
    )
    momenta = _four_momenta(tables)
    rows = np.arange(events.n)
    triplets = np.array(list(combinations(range(feature.max_objects), 3)), dtype=np.int64)
    if not len(triplets):
        return np.full(events.n, np.nan), np.full(events.n, np.nan)
    # events x combinations: every event uses the same list of object indices
    top = _mass(momenta, rows[:, None, None], triplets[None, :, :])
    distance = np.where(real[:, triplets].all(axis=-1), np.abs(top - TOP_MASS), np.inf)
    best = np.argmin(distance, axis=1)
    found = np.isfinite(distance[rows, best])
    chosen = triplets[best]  # events x 3 object indices
    pairs = chosen[:, [[0, 1], [0, 2], [1, 2]]]  # events x 3 pairs x 2
    w_candidates = _mass(momenta, rows[:, None, None], pairs)
    w_best = np.argmin(np.abs(w_candidates - W_MASS), axis=1)
    top_mass = np.where(found, top[rows, best], np.nan)
    w_mass = np.where(found, w_candidates[rows, w_best], np.nan)
    return top_mass, w_mass


def _four_momenta(tables: dict[str, np.ndarray]) -> np.ndarray:
    """(px, py, pz, E) stacked: 4 x events x objects (padding gives zeros)."""
    pt, eta, phi, mass = (np.nan_to_num(tables[f]) for f in FOUR_VECTOR)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + mass**2)])


def _mass(momenta: np.ndarray, rows: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Invariant mass of the sum of ``momenta[:, rows, objects]`` over the last axis."""
    px, py, pz, energy = momenta[:, rows, objects].sum(axis=-1)
    return np.sqrt(np.maximum(energy**2 - px**2 - py**2 - pz**2, 0.0))


def _dr_bb(events: _Events, feature: EventFeature) -> np.ndarray:
    """ΔR between the two leading (by pt) selected objects tagged above the working point."""
    tag = f"({feature.field} > {float(feature.working_point)!r})"
    selection = f"({feature.selection}) and {tag}" if feature.selection else tag
    tables, real = events.objects(
        str(feature.collection), ["eta", "phi"], order_by="pt", n=2, selection=selection
    )
    d_eta = tables["eta"][:, 0] - tables["eta"][:, 1]
    d_phi = np.mod(tables["phi"][:, 0] - tables["phi"][:, 1] + np.pi, 2 * np.pi) - np.pi
    return np.where(real.all(axis=1), np.hypot(d_eta, d_phi), np.nan)
