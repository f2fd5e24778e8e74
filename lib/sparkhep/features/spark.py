"""Run the numpy feature code over a Spark DataFrame through ``mapInArrow``.

Whole Arrow batches go to Python and come back; there is no per-row Python UDF anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from sparkhep.features.compute import compute_features
from sparkhep.features.spec import FeatureSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def build_features(events: DataFrame, spec: FeatureSpec, *, keep: Sequence[str] = ()) -> DataFrame:
    """Add the feature columns of ``spec`` to ``events``, keeping only ``keep`` besides them.

    Args:
        events: raw events with at least the branches of ``spec.branches()``.
        spec: the features to compute.
        keep: columns carried through unchanged (event id, label, weight, …).

    Returns:
        A DataFrame with the ``keep`` columns followed by one double column per feature.
    """
    from pyspark.sql.types import DoubleType, StructField, StructType

    missing = [c for c in [*keep, *spec.branches()] if c not in events.columns]
    if missing:
        raise KeyError(f"columns {missing!r} are not in the events; they have {events.columns!r}")
    kept = [events.schema[c] for c in keep]
    schema = StructType(kept + [StructField(n, DoubleType(), False) for n in spec.feature_names()])
    inputs = events.select(*dict.fromkeys([*keep, *spec.branches()]))
    keep_names = list(keep)

    def features_of(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            computed = compute_features(batch, spec)
            arrays = [batch.column(name) for name in keep_names]
            arrays += [pa.array(computed[name], pa.float64()) for name in spec.feature_names()]
            yield pa.RecordBatch.from_arrays(arrays, names=keep_names + spec.feature_names())

    return inputs.mapInArrow(features_of, schema)
