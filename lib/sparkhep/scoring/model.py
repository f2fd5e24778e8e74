"""``ScoringModel``: a sparkhep MLflow model scored with numpy, from features or raw events.

The model directory (see :mod:`sparkhep.registry.flavor`) holds the saved Spark pipeline under
``sparkml/`` and the feature spec and feature names under ``sparkhep/``. A request comes either
as the model's feature columns or as the raw branches the feature spec reads (jagged ones as a
list per event); raw events go through :func:`sparkhep.features.compute.compute_features`, the
very function Spark runs through ``mapInArrow`` at training time. Bad input — a missing or
misspelt column, values that are not numbers, NaN or null — is a ``ValueError`` naming the
column, which a server turns into HTTP 400.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sparkhep.features.compute import compute_features
from sparkhep.features.spec import FeatureSpec
from sparkhep.scoring.sparkml import NumpyPipelineScorer, load_pipeline

log = logging.getLogger(__name__)

SPARK_MODEL_DIR = "sparkml"
SPARKHEP_DIR = "sparkhep"
SPEC_FILE = f"{SPARKHEP_DIR}/feature_spec.json"
FEATURES_FILE = f"{SPARKHEP_DIR}/features.json"


class ScoringModel:
    """P(signal) of a sparkhep model without pyspark or a JVM.

    Attributes:
        feature_names: the engineered feature columns, in the model's (signature) order.
        raw_branches: the branches the feature spec reads (the raw-event form).
        spec: the feature spec the model was trained with.
        engine: ``"gbt"``, ``"mlp"`` or ``"xgboost"``.
    """

    def __init__(self, pipeline: NumpyPipelineScorer, spec: FeatureSpec, *, path: Path) -> None:
        declared = spec.feature_names()
        unknown = [n for n in pipeline.input_columns if n not in declared]
        if unknown:
            raise ValueError(
                f"{path}: the pipeline reads {unknown!r}, which the feature spec does not "
                f"compute (it computes {declared!r})"
            )
        self.path = path
        self.pipeline = pipeline
        self.spec = spec
        self.feature_names: list[str] = list(pipeline.input_columns)
        self.raw_branches: list[str] = spec.branches()
        self.engine: str = pipeline.engine

    def __repr__(self) -> str:
        return (
            f"ScoringModel(engine={self.engine!r}, features={len(self.feature_names)}, "
            f"path={str(self.path)!r})"
        )

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """P(signal) per row of ``x`` (N x n_features, columns in ``feature_names`` order).

        Raises:
            ValueError: for a wrong shape, or a NaN/inf value (named by its feature column),
                which Spark's ``VectorAssembler`` (``handleInvalid = "error"``) refuses too.
        """
        matrix = np.asarray(x, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected a matrix of shape (N, {len(self.feature_names)}) with columns "
                f"{self.feature_names!r}, got shape {matrix.shape}"
            )
        bad = ~np.isfinite(matrix)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise ValueError(
                f"feature {self.feature_names[column]!r}: row {row} is "
                f"{float(matrix[row, column])!r}; every feature value must be a finite number"
            )
        return self.pipeline.predict_matrix(matrix)

    def features_from_raw(self, table: pa.Table) -> np.ndarray:
        """Raw branches (flat numbers, jagged lists of numbers) → (N x n_features) float64.

        Raises:
            ValueError: naming a missing branch or one whose values are not numbers.
        """
        missing = [b for b in self.raw_branches if b not in table.schema.names]
        if missing:
            hint = _closest(missing, [n for n in table.schema.names if n not in self.raw_branches])
            raise ValueError(f"raw events lack branches {missing!r}{hint}")
        for branch in self.raw_branches:
            kind = table.schema.field(branch).type
            nested = pa.types.is_list(kind) or pa.types.is_large_list(kind)
            inner = kind.value_type if nested else kind
            if not (
                pa.types.is_integer(inner)
                or pa.types.is_floating(inner)
                or pa.types.is_boolean(inner)
                or pa.types.is_null(inner)
            ):
                raise ValueError(
                    f"branch {branch!r}: expected numbers or lists of numbers, got {kind}"
                )
        try:
            features = compute_features(table.select(self.raw_branches), self.spec)
        except (KeyError, TypeError) as err:
            raise ValueError(str(err.args[0] if err.args else err)) from err
        return np.column_stack([features[n] for n in self.feature_names]).reshape(
            table.num_rows, len(self.feature_names)
        )

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """P(signal) per row of ``frame``, given as feature columns or as raw branches.

        All feature columns present → feature form (other columns are ignored); else all raw
        branches present → raw-event form (jagged branches as a list per event).

        Raises:
            ValueError: naming the missing columns of both forms, or a column whose values are
                not finite numbers.
        """
        columns = [str(c) for c in frame.columns]
        if all(n in columns for n in self.feature_names):
            return self.predict_matrix(_feature_matrix(frame, self.feature_names))
        if all(b in columns for b in self.raw_branches):
            return self.predict_matrix(self.features_from_raw(_raw_table(frame, self.raw_branches)))
        known = {*self.feature_names, *self.raw_branches}
        unknown = [c for c in columns if c not in known]
        missing_features = [n for n in self.feature_names if n not in columns]
        missing_raw = [b for b in self.raw_branches if b not in columns]
        raise ValueError(
            "input matches neither form: as features it lacks columns "
            f"{missing_features!r}; as raw events it lacks branches {missing_raw!r}"
            f"{_closest([*missing_features, *missing_raw], unknown)}"
        )


def load_scoring_model(path: str | Path) -> ScoringModel:
    """Load the local directory of an MLflow model logged by sparkhep, for numpy scoring.

    Args:
        path: the model directory (the one holding ``MLmodel``, ``sparkml/``, ``sparkhep/``).

    Returns:
        The model.

    Raises:
        FileNotFoundError: the directory lacks the saved pipeline or sparkhep's files.
        ValueError: naming a pipeline stage the numpy scorer does not implement.
    """
    root = Path(path)
    spec, recorded = read_model_features(root)
    model = ScoringModel(load_pipeline(root / SPARK_MODEL_DIR), spec, path=root)
    if recorded is not None and recorded != model.feature_names:
        raise ValueError(
            f"{root / FEATURES_FILE} lists features {recorded!r}, but the pipeline's assembler "
            f"reads {model.feature_names!r}"
        )
    log.info("loaded %r", model)
    return model


def read_model_features(root: Path) -> tuple[FeatureSpec, list[str] | None]:
    """The feature spec and feature columns a sparkhep model directory carries.

    Args:
        root: the model directory.

    Returns:
        The spec and the recorded feature columns (None when the file is absent).

    Raises:
        FileNotFoundError: the directory has no feature spec (not a sparkhep model).
    """
    spec_path = root / SPEC_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(
            f"{root}: not a sparkhep model (expected {spec_path}, written by "
            "sparkhep.registry.flavor.save_model)"
        )
    spec = FeatureSpec.from_dict(json.loads(spec_path.read_text()))
    features_path = root / FEATURES_FILE
    if not features_path.is_file():
        return spec, None
    return spec, json.loads(features_path.read_text())["features"]


def _feature_matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    columns = []
    for name in names:
        series = frame[name]
        try:
            values = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"feature {name!r}: expected numbers, got {series.dtype} values such as "
                f"{series.iloc[0]!r}"
                if len(series)
                else f"feature {name!r}: {err}"
            ) from err
        columns.append(values)
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def _raw_table(frame: pd.DataFrame, branches: list[str]) -> pa.Table:
    arrays = {}
    for branch in branches:
        values = frame[branch]
        try:
            if values.dtype == object:
                arrays[branch] = pa.array(
                    [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
                )
            else:
                arrays[branch] = pa.array(values.to_numpy())
        except (pa.ArrowException, TypeError, ValueError) as err:
            raise ValueError(
                f"branch {branch!r}: expected a number or a list of numbers per event ({err})"
            ) from err
    return pa.table(arrays)


def _closest(missing: list[str], present: list[str]) -> str:
    """`` (misspelt? {missing: present})`` for present names close to missing ones, any case."""
    lowered = {name.lower(): name for name in present}
    hints = {}
    for name in missing:
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.8)
        if close:
            hints[name] = lowered[close[0]]
    return f" (misspelt? {hints!r})" if hints else ""
