"""Log a fitted Spark ``PipelineModel`` to the active MLflow run and register a version."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from pyspark.ml import PipelineModel

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"


def spark_pip_requirements() -> list[str]:
    """What a Spark-flavored model needs to load, given explicitly.

    Letting MLflow infer requirements starts a subprocess that loads the model (~15 s a call).
    """
    import mlflow
    import pyspark

    return [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}"]


def log_and_register(model: PipelineModel, *, registered_model: str) -> ModelVersion:
    """Log ``model`` under the active run's ``model`` artifact and register a new version.

    Args:
        model: the fitted pipeline.
        registered_model: the registered model name that receives the version.

    Returns:
        The new model version.
    """
    import mlflow.spark

    info = mlflow.spark.log_model(
        model,
        MODEL_ARTIFACT,
        pip_requirements=spark_pip_requirements(),
        registered_model_name=registered_model,
    )
    version = mlflow.MlflowClient().get_model_version(
        registered_model, info.registered_model_version
    )
    log.info("registered %s version %s from %s", registered_model, version.version, info.model_uri)
    return version
