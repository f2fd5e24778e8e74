"""The Spark ML pipeline a job config asks for: feature assembly plus one estimator."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sparkhep.train.weights import TRAIN_WEIGHT

if TYPE_CHECKING:
    from pyspark.ml import Pipeline
    from pyspark.ml.base import Estimator

FEATURES_VECTOR = "features"


def gbt_classifier(params: Mapping[str, Any]) -> Estimator:
    """MLlib ``GBTClassifier`` reading the assembled vector, ``label`` and ``train_weight``.

    Args:
        params: MLlib parameter names and values (``maxIter``, ``maxDepth``, ``stepSize``, …).

    Returns:
        The configured estimator.

    Raises:
        ValueError: naming an unknown parameter and the closest valid ones.
    """
    from pyspark.ml.classification import GBTClassifier

    estimator = GBTClassifier(featuresCol=FEATURES_VECTOR, labelCol="label", weightCol=TRAIN_WEIGHT)
    _check_params(estimator, params)
    return estimator.setParams(**params)


def _check_params(estimator: Estimator, params: Mapping[str, Any]) -> None:
    valid = sorted(p.name for p in estimator.params)
    for name in params:
        if not estimator.hasParam(name):
            close = difflib.get_close_matches(name, valid, n=3)
            raise ValueError(
                f"model.params: {type(estimator).__name__} has no parameter {name!r}; "
                f"closest: {close!r}"
            )


def build_pipeline(feature_names: Sequence[str], params: Mapping[str, Any]) -> Pipeline:
    """``VectorAssembler`` over the feature columns, then the GBT classifier.

    Args:
        feature_names: the model's input columns, in order.
        params: estimator parameters from the job config.

    Returns:
        An unfitted pipeline.
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler

    assembler = VectorAssembler(inputCols=list(feature_names), outputCol=FEATURES_VECTOR)
    return Pipeline(stages=[assembler, gbt_classifier(params)])
