"""Log a fitted Spark ``PipelineModel`` to the active MLflow run and register a version.

Every registered version is sparkhep's two-flavor model (:mod:`sparkhep.registry.flavor`):
``spark`` for batch scoring in Spark, ``python_function`` scored by numpy without a JVM.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow.entities.model_registry import ModelVersion
    from pyspark.ml import PipelineModel

    from sparkhep.features.spec import FeatureSpec

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"


def spark_pip_requirements() -> list[str]:
    """What a Spark-flavored model needs to load, given explicitly.

    Letting MLflow infer requirements starts a subprocess that loads the model (~15 s a call).
    """
    import mlflow
    import pyspark

    return [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}"]


def log_and_register(
    model: PipelineModel,
    *,
    registered_model: str,
    feature_spec: FeatureSpec,
    feature_names: Sequence[str],
    raw_example: pa.Table,
    engine: str,
) -> ModelVersion:
    """Log ``model`` as the active run's two-flavor ``model`` and register a new version.

    Args:
        model: the fitted pipeline.
        registered_model: the registered model name that receives the version.
        feature_spec: the spec the features were computed with (travels with the model).
        feature_names: the pipeline's feature columns (after dropping constant ones).
        raw_example: a few raw events (the spec's branches); their features, computed with
            the same numpy code, are the input example.
        engine: ``gbt``, ``mlp`` or ``xgboost``.

    Returns:
        The new model version.
    """
    import mlflow
    import pandas as pd

    from sparkhep.features.compute import compute_features
    from sparkhep.registry import flavor

    features = pd.DataFrame(compute_features(raw_example, feature_spec))
    info = flavor.log_model(
        model,
        name=MODEL_ARTIFACT,
        registered_model_name=registered_model,
        feature_spec=feature_spec,
        feature_names=list(feature_names),
        raw_example=raw_example,
        input_example=features[list(feature_names)],
        engine=engine,
    )
    version = mlflow.MlflowClient().get_model_version(
        registered_model, info.registered_model_version
    )
    log.info("registered %s version %s from %s", registered_model, version.version, info.model_uri)
    return version
