"""sparkhep's MLflow flavor: one logged model, readable by Spark and by numpy alone.

The MLmodel lists two flavors:

- ``spark``: the fitted ``PipelineModel`` under ``sparkml/``, exactly as ``mlflow.spark`` writes
  it, so ``mlflow.spark.load_model`` (batch scoring in Spark) works;
- ``python_function`` with ``loader_module = sparkhep.registry.flavor``: :func:`_load_pyfunc`
  reads the same ``sparkml/`` files with :mod:`sparkhep.scoring` (numpy, no pyspark, no JVM), so
  ``mlflow.pyfunc.load_model``, ``mlflow models serve`` and ``sparkhep serve`` need no Java.

Beside them, ``sparkhep/feature_spec.json`` (``FeatureSpec.to_dict()``) and
``sparkhep/features.json`` (the model's feature columns) let a request send raw events; the raw
form is described in ``raw_input.json`` and ``raw_input.md``. The signature names both forms,
every column optional: the feature columns (double) and the raw branches (double, or an array
of double for jagged ones); ``predict`` takes whichever form is complete. Requirements are given
explicitly (MLflow's inference loads the model in a subprocess, ~15 s a call).

As MLflow's own flavor modules (``mlflow.xgboost``, ``mlflow.spark``): :func:`save_model`,
:func:`log_model`, :func:`load_model`, :func:`_load_pyfunc`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkhep.scoring.model import FEATURES_FILE, SPARK_MODEL_DIR, SPEC_FILE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from mlflow.models import Model, ModelSignature
    from mlflow.models.model import ModelInfo
    from pyspark.ml import PipelineModel

    from sparkhep.features.spec import FeatureSpec
    from sparkhep.scoring import ScoringModel

log = logging.getLogger(__name__)

LOADER_MODULE = "sparkhep.registry.flavor"
RAW_INPUT_JSON = "raw_input.json"
RAW_INPUT_MD = "raw_input.md"
# the GBT's evaluator (numba; Treelite and numpy are fallbacks), xgboost's booster
ENGINE_REQUIREMENTS = {"gbt": "numba", "xgboost": "xgboost-cpu"}


def pip_requirements(engine: str) -> list[str]:
    """What the model needs to load in both flavors, pinned to this environment's versions.

    Args:
        engine: ``gbt`` (numba compiles its evaluator), ``mlp`` or ``xgboost``.

    Returns:
        Requirement strings. sparkhep itself (the pyfunc loader) must be installed beside them;
        it is not on PyPI, so it is not listed.
    """
    from importlib.metadata import PackageNotFoundError, version

    names = ["mlflow", "pyspark", "numpy", "pandas", "pyarrow"]
    if engine in ENGINE_REQUIREMENTS:
        names.append(ENGINE_REQUIREMENTS[engine])
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned


def model_signature(spec: FeatureSpec, feature_names: Sequence[str], raw: pa.Table) -> Any:
    """Both input forms, every column optional; the output is P(signal), a double per event.

    Args:
        spec: the feature spec (its branches are the raw form).
        feature_names: the model's feature columns.
        raw: raw events with the spec's branches, for which branches are jagged (lists).

    Returns:
        The ``mlflow.models.ModelSignature``.
    """
    import pyarrow as pa
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    columns = [ColSpec(DataType.double, name, required=False) for name in feature_names]
    for branch in spec.branches():
        if branch in feature_names:
            continue
        kind = raw.schema.field(branch).type
        jagged = pa.types.is_list(kind) or pa.types.is_large_list(kind)
        columns.append(
            ColSpec(Array(DataType.double) if jagged else DataType.double, branch, required=False)
        )
    return ModelSignature(
        inputs=Schema(columns), outputs=Schema([ColSpec(DataType.double, "p_signal")])
    )


def save_model(
    spark_model: PipelineModel,
    path: str | Path,
    *,
    feature_spec: FeatureSpec,
    feature_names: Sequence[str],
    raw_example: pa.Table,
    input_example: pd.DataFrame,
    engine: str,
    mlflow_model: Model | None = None,
    signature: ModelSignature | None = None,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Write the two-flavor model directory at ``path`` (needs the active SparkSession).

    Args:
        spark_model: the fitted pipeline (``VectorAssembler`` reading ``feature_names`` first).
        path: a local directory that does not exist yet.
        feature_spec: the spec the features were computed with.
        feature_names: the pipeline's feature columns (after dropping constant ones).
        raw_example: a few raw events (the spec's branches), for the raw-form description.
        input_example: a few rows of the feature columns (MLflow's input example).
        engine: ``gbt``, ``mlp`` or ``xgboost`` (for the requirements).
        mlflow_model: the ``Model`` being built (given by ``Model.log``).
        signature: defaults to :func:`model_signature`.
        metadata: free-form MLmodel metadata.
        kwargs: passed to ``mlflow.spark.save_model`` (e.g. ``dfs_tmpdir``).
    """
    import mlflow.spark
    from mlflow import pyfunc
    from mlflow.models import Model
    from mlflow.models.model import MLMODEL_FILE_NAME

    root = Path(path)
    names = list(feature_names)
    mlflow_model = mlflow_model or Model()
    mlflow.spark.save_model(
        spark_model,
        str(root),
        mlflow_model=mlflow_model,
        signature=signature or model_signature(feature_spec, names, raw_example),
        input_example=input_example[names],
        pip_requirements=pip_requirements(engine),
        metadata=metadata,
        **kwargs,
    )
    (root / SPEC_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / SPEC_FILE).write_text(json.dumps(feature_spec.to_dict(), indent=2) + "\n")
    (root / FEATURES_FILE).write_text(json.dumps({"features": names}, indent=2) + "\n")
    _write_raw_description(root, feature_spec, raw_example)
    # replace mlflow.spark's pyfunc (which starts Spark) by sparkhep's numpy loader
    spark_pyfunc = mlflow_model.flavors.pop(pyfunc.FLAVOR_NAME)
    pyfunc.add_to_model(
        mlflow_model,
        loader_module=LOADER_MODULE,
        conda_env=spark_pyfunc.get(pyfunc.ENV, {}).get("conda", "conda.yaml"),
        python_env=spark_pyfunc.get(pyfunc.ENV, {}).get("virtualenv", "python_env.yaml"),
        engine=engine,
        spark_model=SPARK_MODEL_DIR,
        feature_spec=SPEC_FILE,
        features=FEATURES_FILE,
        raw_input=RAW_INPUT_JSON,
    )
    mlflow_model.save(str(root / MLMODEL_FILE_NAME))
    _check_loadable(root, names)


def log_model(
    spark_model: PipelineModel,
    *,
    name: str = "model",
    registered_model_name: str | None = None,
    **kwargs: Any,
) -> ModelInfo:
    """Log the two-flavor model to the active run (and register a version when named).

    Args:
        spark_model: the fitted pipeline.
        name: the model's name in the run.
        registered_model_name: the registered model that receives a new version.
        kwargs: the keyword arguments of :func:`save_model`.

    Returns:
        MLflow's ``ModelInfo`` (``registered_model_version`` when registered).
    """
    from mlflow.models import Model

    return Model.log(
        artifact_path=None,
        name=name,
        flavor=sys.modules[__name__],
        spark_model=spark_model,
        registered_model_name=registered_model_name,
        **kwargs,
    )


def load_model(model_uri: str, *, dst_path: str | None = None) -> ScoringModel:
    """The numpy ``ScoringModel`` of a sparkhep model URI (``models:/name@alias``, ``runs:/…``).

    Args:
        model_uri: any MLflow model URI.
        dst_path: where to download it (a temporary directory by default).

    Returns:
        The model, loaded without pyspark.
    """
    from mlflow.artifacts import download_artifacts

    from sparkhep.scoring import load_scoring_model

    return load_scoring_model(download_artifacts(artifact_uri=model_uri, dst_path=dst_path))


class PyfuncScorer:
    """What ``mlflow.pyfunc`` calls: ``predict(DataFrame) -> P(signal)`` per event."""

    def __init__(self, model: ScoringModel) -> None:
        self.model = model

    def get_raw_model(self) -> ScoringModel:
        """The underlying :class:`~sparkhep.scoring.ScoringModel`."""
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """P(signal) for a DataFrame in feature or raw-event form (or a feature matrix)."""
        import numpy as np
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return self.model.predict_frame(data)
        if isinstance(data, dict):
            return self.model.predict_frame(pd.DataFrame(data))
        return self.model.predict_matrix(np.asarray(data, dtype=np.float64))


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> PyfuncScorer:
    """``python_function`` loader: ``path`` is the model directory (no ``data`` key is set)."""
    from sparkhep.scoring import load_scoring_model

    return PyfuncScorer(load_scoring_model(path))


def _write_raw_description(root: Path, spec: FeatureSpec, raw: pa.Table) -> None:
    import pyarrow as pa

    example = raw.select(spec.branches()).slice(0, 2)
    branches = [
        {
            "name": name,
            "type": str(example.schema.field(name).type),
            "jagged": pa.types.is_list(example.schema.field(name).type)
            or pa.types.is_large_list(example.schema.field(name).type),
        }
        for name in spec.branches()
    ]
    records = example.to_pylist()
    (root / RAW_INPUT_JSON).write_text(
        json.dumps({"branches": branches, "dataframe_records": records}, indent=2) + "\n"
    )
    lines = [
        "# Raw-event input",
        "",
        "Besides its feature columns (the signature's double columns, `input_example.json`), this",
        "model scores raw events: one row per event with the branches below, a jagged branch as a",
        "list of numbers per event. The features are computed from them with",
        "`sparkhep.features.compute.compute_features`, the code Spark ran at training time.",
        "",
        "| branch | type | jagged |",
        "|---|---|---|",
        *(f"| `{b['name']}` | {b['type']} | {'yes' if b['jagged'] else 'no'} |" for b in branches),
        "",
        "Example (`POST /invocations`):",
        "",
        "```json",
        json.dumps({"dataframe_records": records[:1]}),
        "```",
        "",
    ]
    (root / RAW_INPUT_MD).write_text("\n".join(lines))


def _check_loadable(root: Path, feature_names: list[str]) -> None:
    """Load the written directory with the numpy scorer, so that a model it cannot score (an
    unsupported stage, features out of step) fails here rather than at serving time."""
    from sparkhep.scoring import load_scoring_model

    loaded = load_scoring_model(root)
    if loaded.feature_names != feature_names:
        raise ValueError(
            f"{root}: the pipeline reads {loaded.feature_names!r}, expected {feature_names!r}"
        )
