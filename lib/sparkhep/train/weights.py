"""Event weights: physical per-sample normalisation, then training weights.

Physics weight of an event = genWeight x xsec x lumi / Σ genWeight of its sample, when the
samples declare a cross-section (needed as soon as a class has several samples); else the
genWeight (or 1) as it is. ``sum_genweight`` comes from the config, or is summed over the
sample's events as read — with a warning, because a skimmed sample then gives an approximate
normalisation. Evaluation always uses the physics weights.

Training weights: the negative-weight policy is applied (``clip`` to 0, ``abs``, or ``keep``
for xgboost; MLlib rejects negative weights, so the GBT and MLP engines refuse them unless a
policy is set), then each class is rescaled to a mean weight of 1 (not a sum of 1, which would
starve tree splits of weight): the QCD genWeights here span ~1e-6…1.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sparkhep.config import JobConfig, WeightsConfig

log = logging.getLogger(__name__)

TRAIN_WEIGHT = "train_weight"


def sample_scales(
    spark: SparkSession, config: JobConfig, sample_paths: Mapping[str, str]
) -> dict[str, float]:
    """Per-sample factor xsec x lumi / Σ genWeight (1 when the samples declare no xsec).

    Args:
        spark: the session.
        config: samples (``xsec``, ``sum_genweight``), ``weights.lumi`` and the weight branch.
        sample_paths: sample name → its Parquet events (to sum genWeight when not declared).

    Returns:
        Sample name → the factor that multiplies each event's genWeight.

    Raises:
        ValueError: if a sample's genWeights do not sum to a positive number.
    """
    from pyspark.sql import functions as F

    scales = {}
    for sample in config.samples:
        if sample.xsec is None:
            scales[sample.name] = 1.0
            continue
        total = sample.sum_genweight
        if total is None:
            weight = F.col(config.features.weight) if config.features.weight else F.lit(1.0)
            total = spark.read.parquet(sample_paths[sample.name]).agg(F.sum(weight)).first()[0]
            log.warning(
                "sample %s: sum_genweight not in the config, using the sum over the events as "
                "read (%g); if the files are a skim this normalisation is only approximate",
                sample.name,
                total or 0.0,
            )
        if not total or total <= 0:
            raise ValueError(
                f"sample {sample.name!r}: Σ genWeight is {total!r}; it must be positive to "
                "normalise the sample to xsec x lumi"
            )
        scales[sample.name] = sample.xsec * config.weights.lumi / total
    return scales


def training_weights(
    df: DataFrame,
    policy: WeightsConfig,
    *,
    engine: str,
    fit_rows: str = "split = 'train'",
    weight_col: str = "weight",
    label_col: str = "label",
) -> DataFrame:
    """Add ``train_weight``: the negative-weight policy, then (optionally) class balancing.

    Args:
        df: events with a label and a physics weight.
        policy: ``negative`` policy and ``balance_classes``.
        engine: the model engine (``gbt`` and ``mlp`` refuse negative weights without a policy).
        fit_rows: SQL condition selecting the rows the class means are taken over.
        weight_col: the physics weight column.
        label_col: the 0/1 label column.

    Returns:
        ``df`` with the ``train_weight`` column.

    Raises:
        ValueError: for negative weights without a policy on an MLlib engine, or a class that
            is absent or has no positive total weight.
    """
    from pyspark.sql import functions as F

    weight = F.col(weight_col)
    if policy.negative == "clip":
        weight = F.greatest(weight, F.lit(0.0))
    elif policy.negative == "abs":
        weight = F.abs(weight)
    stats = {
        row[label_col]: row
        for row in df.filter(fit_rows)
        .groupBy(label_col)
        .agg(
            F.sum(weight).alias("total"),
            F.mean(weight).alias("mean"),
            F.count(F.when(F.col(weight_col) < 0, 1)).alias("negative"),
        )
        .collect()
    }
    negative = sum(row["negative"] for row in stats.values())
    if negative and policy.negative is None and engine != "xgboost":
        raise ValueError(
            f"{negative} training events have negative weights and MLlib's {engine!r} rejects "
            "them; set weights.negative = 'clip' or 'abs' (or use model.engine = 'xgboost')"
        )
    for label in (0.0, 1.0):
        total = stats[label]["total"] if label in stats else None
        if not total or total <= 0:
            raise ValueError(
                f"class label={label:g} has total weight {total!r} in the training split; "
                "each class needs events with a positive total weight"
            )
    if not policy.balance_classes:
        return df.withColumn(TRAIN_WEIGHT, weight)
    scale = F.when(F.col(label_col) == 1.0, F.lit(stats[1.0]["mean"])).otherwise(
        F.lit(stats[0.0]["mean"])
    )
    return df.withColumn(TRAIN_WEIGHT, weight / scale)
