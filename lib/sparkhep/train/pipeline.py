"""The three trainers: Spark ML pipelines for ``engine = "gbt" | "mlp" | "xgboost"``.

Every fitted model is a ``PipelineModel`` whose first stage assembles the feature columns into
``features`` and whose last stage writes ``probability`` (index 1 = P(signal)):

- ``gbt``: ``[VectorAssembler, GBTClassifier]``, weighted, early stopping on the rows flagged by
  ``is_validation`` (``validationIndicatorCol``). Node-id caching and checkpointing are off
  (``GBT_DEFAULTS`` says why).
- ``mlp``: ``[VectorAssembler, StandardScaler(withMean, withStd) → features_scaled,
  MultilayerPerceptronClassifier]``; the input width is read from the assembled vector. MLlib's
  MLP takes no weights, so it is trained on a sample in which each event appears on average
  ``train_weight / mean(train_weight)`` times (integer part plus one more with the fractional
  part as probability) — a weight-proportional sample of about the training size. It is
  evaluated with the weights like the others. MLlib's MLP has neither weight decay nor early
  stopping, so the number of L-BFGS iterations is its regulariser: on the Pythia samples, 300
  iterations reach train AUC 0.998 and test AUC 0.903 (memorised), 50 iterations 0.971 / 0.960.
- ``xgboost``: ``[VectorAssembler, SparkXGBClassifierModel]``, dense features (``missing`` is NaN,
  which the features never are: padding is a value, not missing), weighted, early stopping.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sparkhep.train.weights import TRAIN_WEIGHT

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.ml.base import Estimator
    from pyspark.sql import DataFrame

    from sparkhep.config import ModelConfig

log = logging.getLogger(__name__)

FEATURES_VECTOR = "features"
SCALED_VECTOR = "features_scaled"
VALIDATION = "is_validation"
LABEL = "label"
PARTITION_BYTES = 256 * 1024**2
"""Most bytes per partition of the rows a model is fitted on (Spark's plan estimate)."""
UNKNOWN_SIZE = 2**63 - 1
"""What Spark's plan estimates when it cannot (``spark.sql.defaultSizeInBytes``' default)."""

# Measured on the Pythia and generated samples (BENCHMARKS.md "Train"). MLlib bins and caches the
# training points itself, and the trees are shallow: node-id caching costs an extra RDD
# materialisation per level and checkpointing a disk write every few iterations, both for lineages
# too short (depth 5, at most maxIter iterations) to need them. With stepSize 0.2, early stopping
# (MLlib stops at the first iteration improving the validation loss by less than validationTol,
# relative; no patience) ends after 19 (Pythia) to 41 (2e5 generated events) trees, 0.001-0.003
# below the test AUC of MLlib's defaults run for 100 iterations; deeper trees (6-8) or a larger
# step end at a lower test AUC on both samples; validationTol 1e-4 adds 0-4 trees, +0.0002 at most.
# With 10^6 events a larger step pays: stepSize 0.5 stops after 36 trees at the defaults' AUC in
# half their time, but on a sample as small as Pythia's it stops after a handful of trees, so the
# default stays 0.2 and large samples set it in their config.
GBT_DEFAULTS: dict[str, Any] = {
    "maxIter": 100,
    "maxDepth": 5,
    "stepSize": 0.2,
    "maxBins": 32,
    "subsamplingRate": 0.8,
    "featureSubsetStrategy": "all",
    "validationTol": 0.001,
    "cacheNodeIds": False,
    "checkpointInterval": -1,
    "seed": 42,
}
MLP_DEFAULTS: dict[str, Any] = {"maxIter": 50, "solver": "l-bfgs", "tol": 1e-6, "seed": 42}
XGBOOST_DEFAULTS: dict[str, Any] = {
    "n_estimators": 400,
    "max_depth": 5,
    "learning_rate": 0.1,
    "tree_method": "hist",
    "early_stopping_rounds": 20,
    "eval_metric": "logloss",
    "random_state": 42,
}
# MLlib names accepted for xgboost too, so --set model.params.maxDepth=6 works on every tree engine
XGBOOST_ALIASES = {
    "maxIter": "n_estimators",
    "maxDepth": "max_depth",
    "stepSize": "learning_rate",
    "subsamplingRate": "subsample",
    "maxBins": "max_bin",
    "seed": "random_state",
}


def fit_pipeline(
    frame: DataFrame,
    feature_names: Sequence[str],
    model: ModelConfig,
    *,
    params: Mapping[str, Any] | None = None,
    early_stopping: bool = True,
) -> PipelineModel:
    """Fit the pipeline of ``model.engine`` on ``frame``.

    Args:
        frame: training rows with ``label``, ``train_weight``, the feature columns and the
            boolean ``is_validation`` (rows used only for early stopping; none for the MLP).
        feature_names: the model's input columns, in order.
        model: engine, parameters and (MLP) hidden layers.
        params: parameters overriding ``model.params`` (a search point).
        early_stopping: use the ``is_validation`` rows for early stopping (tree engines).

    Returns:
        The fitted ``PipelineModel``.

    Raises:
        ValueError: naming an unknown estimator parameter and the closest valid ones.
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler

    merged = {**model.params, **(params or {})}
    assembler = VectorAssembler(inputCols=list(feature_names), outputCol=FEATURES_VECTOR)
    if model.engine == "gbt":
        stages = [assembler, gbt_classifier(merged, early_stopping=early_stopping)]
        return Pipeline(stages=stages).fit(frame)
    if model.engine == "xgboost":
        parallelism = frame.sparkSession.sparkContext.defaultParallelism
        estimator = xgboost_classifier(
            merged, early_stopping=early_stopping, num_workers=parallelism
        )
        return Pipeline(stages=[assembler, estimator]).fit(frame)
    training = weight_proportional_sample(
        frame.filter(~frame[VALIDATION]), seed=int(merged.get("seed", 42))
    )
    width = _vector_width(assembler.transform(training.limit(0)))
    layers = [width, *model.hidden_layers, 2]
    log.info("MLP layers %s (input width from the assembled vector)", layers)
    stages = [
        assembler,
        _standard_scaler(),
        mlp_classifier(merged, layers=layers),
    ]
    return Pipeline(stages=stages).fit(training)


def estimated_bytes(frame: DataFrame) -> int | None:
    """The size Spark's optimized plan estimates for ``frame`` (no job runs), None if unknown."""
    estimated = int(str(frame._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))
    return None if estimated >= UNKNOWN_SIZE else estimated


def spread_over_cores(frame: DataFrame, *, partition_bytes: int = PARTITION_BYTES) -> DataFrame:
    """``frame`` in as many partitions as the cores (a multiple of them for large inputs).

    A tree fit runs one short Spark job per tree level, so a partition count that is not a
    multiple of the cores leaves cores idle in every job, and more partitions than needed add
    task latency to every job: on 10^6 generated events and 2 cores, MLlib's default GBT fit
    (100 trees) took 125.6 s with the 3 partitions the feature table is read as, 119.2 s with 4
    and 89.2 s with 2. The frame is left alone when it already has the count wanted; when the
    plan cannot estimate its size, its partition count is rounded down to whole waves.

    Args:
        frame: the rows to fit on, before they are cached.
        partition_bytes: the most bytes per partition, as Spark's plan estimates the frame.

    Returns:
        ``frame``, or ``frame.repartition(n)``.
    """
    cores = frame.sparkSession.sparkContext.defaultParallelism
    current = frame.rdd.getNumPartitions()
    estimated = estimated_bytes(frame)
    if estimated is None:  # e.g. rows from Python: keep the count, in whole waves
        wanted = cores * max(1, current // cores)
    else:
        wanted = cores * max(1, math.ceil(estimated / (cores * partition_bytes)))
    if current == wanted:
        return frame
    log.info("fit rows: %d partitions → %d (%d cores)", current, wanted, cores)
    return frame.repartition(wanted)


def gbt_classifier(params: Mapping[str, Any], *, early_stopping: bool) -> Estimator:
    """MLlib ``GBTClassifier`` on ``features``/``label``/``train_weight`` with our defaults.

    Args:
        params: MLlib parameter names and values overriding ``GBT_DEFAULTS``.
        early_stopping: stop when the loss on the ``is_validation`` rows stops improving.

    Returns:
        The configured estimator.
    """
    from pyspark.ml.classification import GBTClassifier

    estimator = GBTClassifier(featuresCol=FEATURES_VECTOR, labelCol=LABEL, weightCol=TRAIN_WEIGHT)
    _check_params(estimator, params)
    estimator.setParams(**{**GBT_DEFAULTS, **params})
    if early_stopping:
        estimator.setValidationIndicatorCol(VALIDATION)
    return estimator


def mlp_classifier(params: Mapping[str, Any], *, layers: Sequence[int]) -> Estimator:
    """MLlib ``MultilayerPerceptronClassifier`` reading ``features_scaled``.

    Args:
        params: MLlib parameter names and values overriding ``MLP_DEFAULTS``.
        layers: widths from input to output (input = assembled vector size, output = 2).

    Returns:
        The configured estimator.
    """
    from pyspark.ml.classification import MultilayerPerceptronClassifier

    estimator = MultilayerPerceptronClassifier(featuresCol=SCALED_VECTOR, labelCol=LABEL)
    _check_params(estimator, params)
    if "layers" in params:
        raise ValueError(
            "model.params: 'layers' is derived (input width from the features, output 2); "
            "set model.hidden_layers instead"
        )
    return estimator.setParams(**{**MLP_DEFAULTS, **params}, layers=list(layers))


def xgboost_classifier(
    params: Mapping[str, Any], *, early_stopping: bool, num_workers: int
) -> Estimator:
    """``xgboost.spark.SparkXGBClassifier``: dense features, weighted, optional early stopping.

    Args:
        params: xgboost parameter names (or the MLlib aliases in ``XGBOOST_ALIASES``).
        early_stopping: evaluate on the ``is_validation`` rows and stop early.
        num_workers: xgboost workers (Spark tasks, one core each).

    Returns:
        The configured estimator.
    """
    from xgboost.spark import SparkXGBClassifier

    translated = {XGBOOST_ALIASES.get(k, k): v for k, v in params.items()}
    settings = {**XGBOOST_DEFAULTS, "num_workers": num_workers, **translated}
    if not early_stopping:
        settings.pop("early_stopping_rounds", None)
    return SparkXGBClassifier(
        features_col=FEATURES_VECTOR,
        label_col=LABEL,
        weight_col=TRAIN_WEIGHT,
        validation_indicator_col=VALIDATION if early_stopping else None,
        missing=math.nan,
        enable_sparse_data_optim=False,
        **settings,
    )


def weight_proportional_sample(frame: DataFrame, *, seed: int) -> DataFrame:
    """Each row repeated ⌊r⌋ times plus once more with probability r - ⌊r⌋, r = w / mean(w).

    Args:
        frame: rows with ``train_weight`` (non-negative).
        seed: for the random part.

    Returns:
        About as many rows as ``frame``, distributed like the weighted events.
    """
    from pyspark.sql import functions as F

    mean = frame.agg(F.mean(TRAIN_WEIGHT)).first()[0]
    if not mean or mean <= 0:
        raise ValueError(f"training weights have mean {mean!r}; cannot sample by weight")
    ratio = F.col(TRAIN_WEIGHT) / F.lit(mean)
    copies = F.floor(ratio) + F.when(F.rand(seed) < ratio - F.floor(ratio), 1).otherwise(0)
    repeated = frame.withColumn("_copies", copies.cast("int")).filter("_copies > 0")
    return repeated.withColumn("_copy", F.explode(F.sequence(F.lit(1), "_copies"))).drop(
        "_copies", "_copy"
    )


def _standard_scaler() -> Any:
    from pyspark.ml.feature import StandardScaler

    return StandardScaler(
        withMean=True, withStd=True, inputCol=FEATURES_VECTOR, outputCol=SCALED_VECTOR
    )


def _vector_width(assembled: DataFrame) -> int:
    """Size of the assembled ``features`` vector, from the column's ML attribute metadata."""
    attributes = assembled.schema[FEATURES_VECTOR].metadata["ml_attr"]
    return int(attributes["num_attrs"])


def _check_params(estimator: Estimator, params: Mapping[str, Any]) -> None:
    valid = sorted(p.name for p in estimator.params)
    for name in params:
        if not estimator.hasParam(name):
            close = difflib.get_close_matches(name, valid, n=3)
            raise ValueError(
                f"model.params: {type(estimator).__name__} has no parameter {name!r}; "
                f"closest: {close!r}"
            )
