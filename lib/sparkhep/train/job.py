"""The train job: ROOT samples → Parquet → features → split → fit → evaluate → MLflow.

Reading and writing happen at the edges (``convert_sample``, the feature table write, MLflow);
the steps between are DataFrame → DataFrame functions tested on their own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sparkhep.convert import convert_samples, sample_output
from sparkhep.evaluate.roc import weighted_roc_auc
from sparkhep.evaluate.scores import collect_scores
from sparkhep.features.spark import build_features
from sparkhep.features.split import SPLIT_COLUMN, assign_split
from sparkhep.registry.spark_model import log_and_register
from sparkhep.registry.tracking import configure_tracking
from sparkhep.storage import atomic_directory
from sparkhep.train.pipeline import build_pipeline
from sparkhep.train.weights import class_balanced_weights

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sparkhep.config import JobConfig

log = logging.getLogger(__name__)

LABEL = "label"
WEIGHT = "weight"
SAMPLE = "sample"


@dataclass
class TrainReport:
    """What a train job did, for the CLI summary and the tests."""

    events: dict[str, int] = field(default_factory=dict)
    split_events: dict[str, int] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    test_auc: float = float("nan")
    timings: dict[str, float] = field(default_factory=dict)
    run_id: str = ""
    registered_model: str = ""
    model_version: str = ""
    tracking_uri: str = ""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step of the job into ``timings``."""
        log.info("step %s …", name)
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        log.info("step %s done in %.1f s", name, self.timings[name])


def labelled_features(
    events: DataFrame, config: JobConfig, *, sample: str, label: int
) -> DataFrame:
    """One sample's events → event id, sample, label, weight and the feature columns.

    Args:
        events: the sample's raw events (at least ``config.features.branches_to_read()``).
        config: the job config (feature spec).
        sample: the sample's name, kept as a column.
        label: 1 for signal, 0 for background.

    Returns:
        The sample's rows of the feature table.
    """
    from pyspark.sql import functions as F

    spec = config.features
    weight = F.col(spec.weight).cast("double") if spec.weight else F.lit(1.0)
    tagged = events.withColumns({SAMPLE: F.lit(sample), LABEL: F.lit(float(label)), WEIGHT: weight})
    keep = [*spec.event_id, SAMPLE, LABEL, WEIGHT]
    return build_features(tagged, spec, keep=keep)


def feature_table(
    spark: SparkSession, config: JobConfig, sample_paths: dict[str, str]
) -> DataFrame:
    """The labelled, split feature table of all samples, read from their Parquet datasets."""
    parts = [
        labelled_features(
            spark.read.parquet(sample_paths[s.name]), config, sample=s.name, label=s.label
        )
        for s in config.samples
    ]
    table = parts[0]
    for part in parts[1:]:
        table = table.unionByName(part)
    return assign_split(table, config.split, event_id=config.features.event_id)


def run_train_job(spark: SparkSession, config: JobConfig) -> TrainReport:
    """Run the whole train job of ``config``.

    Args:
        spark: the session (``root`` data source registered, e.g. from ``build_session``).
        config: the validated job config.

    Returns:
        Event counts, features, the weighted test AUC, timings and the registered version.
    """
    import mlflow

    report = TrainReport(features=config.features.feature_names())
    report.tracking_uri = configure_tracking()
    sample_paths = {s.name: sample_output(config, s.name) for s in config.samples}

    with report.step("ingest"):
        report.events = convert_samples(spark, config, branches=config.features.branches_to_read())

    with report.step("features"):
        table_path = f"{config.output.rstrip('/')}/features"
        with atomic_directory(spark, table_path) as temporary:
            feature_table(spark, config, sample_paths).write.parquet(temporary)
        table = spark.read.parquet(table_path)
        report.split_events = {
            row[SPLIT_COLUMN]: row["count"] for row in table.groupBy(SPLIT_COLUMN).count().collect()
        }

    with report.step("train"):
        train = class_balanced_weights(table.filter(f"{SPLIT_COLUMN} = 'train'")).cache()
        model = build_pipeline(report.features, config.model.params).fit(train)
        train.unpersist()

    with report.step("evaluate"):
        test = table.filter(f"{SPLIT_COLUMN} = 'test'")
        scores, labels, weights = collect_scores(model.transform(test))
        report.test_auc = weighted_roc_auc(scores, labels, weights)

    with report.step("register"):
        mlflow.set_experiment(config.mlflow.experiment)
        with mlflow.start_run(run_name=config.name) as run:
            report.run_id = run.info.run_id
            mlflow.log_params(
                {
                    "engine": config.model.engine,
                    **{f"model.{k}": v for k, v in config.model.params.items()},
                    "features": ",".join(report.features),
                    "n_features": len(report.features),
                    "split": json.dumps(
                        {
                            "train": config.split.train,
                            "validation": config.split.validation,
                            "test": config.split.test,
                        }
                    ),
                    "config_file": str(config.source),
                }
            )
            mlflow.log_metrics(
                {
                    "test_auc": report.test_auc,
                    **{f"events_{name}": n for name, n in report.events.items()},
                    **{f"events_split_{name}": n for name, n in report.split_events.items()},
                    **{f"time_{step}_s": t for step, t in report.timings.items()},
                }
            )
            mlflow.log_dict(dict(config.raw), "config/job.json")
            version = log_and_register(model, registered_model=config.mlflow.registered_model)
            report.registered_model = version.name
            report.model_version = str(version.version)
    return report
