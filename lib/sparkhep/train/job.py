"""The train job: ROOT samples → Parquet → features → split → fit → evaluate → MLflow.

Reading and writing happen at the edges (``convert_samples``, the feature table write, MLflow);
the steps between are DataFrame → DataFrame functions tested on their own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkhep.convert import convert_samples, sample_output
from sparkhep.evaluate import plots
from sparkhep.evaluate.lineage import git_commit, input_manifest
from sparkhep.evaluate.metrics import Metric, overtraining_metrics, physics_metrics
from sparkhep.evaluate.scores import collect_scores
from sparkhep.features.spark import build_features
from sparkhep.features.split import SPLIT_COLUMN, assign_split
from sparkhep.registry.promotion import promote, promote_if_better
from sparkhep.registry.spark_model import log_and_register, spark_pip_requirements
from sparkhep.registry.tracking import (
    TrackingServerUnreachable,
    configure_tracking,
    require_tracking_server,
)
from sparkhep.storage import atomic_directory
from sparkhep.train.diagnostics import feature_importances, loss_curves
from sparkhep.train.kfold import score_out_of_fold, train_folds
from sparkhep.train.pipeline import VALIDATION, fit_pipeline, spread_over_cores
from sparkhep.train.search import best_trial, run_search
from sparkhep.train.weights import sample_scales, training_weights

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
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
    dropped_features: list[str] = field(default_factory=list)
    engine: str = ""
    test_auc: float = float("nan")
    metrics: dict[str, Metric] = field(default_factory=dict)
    best_params: dict[str, Any] = field(default_factory=dict)
    trials: int = 0
    kfold: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    metrics_path: str = ""
    run_id: str = ""
    registered_model: str = ""
    model_version: str = ""
    alias: str = ""
    promotion: str = ""
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
    events: DataFrame, config: JobConfig, *, sample: str, label: int, scale: float = 1.0
) -> DataFrame:
    """One sample's events → event id, sample, label, weight and the feature columns.

    Args:
        events: the sample's raw events (at least ``config.features.branches_to_read()``).
        config: the job config (feature spec).
        sample: the sample's name, kept as a column.
        label: 1 for signal, 0 for background.
        scale: the sample's normalisation (xsec x lumi / Σ genWeight, see ``sample_scales``).

    Returns:
        The sample's rows of the feature table; ``weight`` = genWeight x ``scale``.
    """
    from pyspark.sql import functions as F

    spec = config.features
    weight = F.col(spec.weight).cast("double") if spec.weight else F.lit(1.0)
    tagged = events.withColumns(
        {SAMPLE: F.lit(sample), LABEL: F.lit(float(label)), WEIGHT: weight * F.lit(scale)}
    )
    keep = [*spec.event_id, SAMPLE, LABEL, WEIGHT]
    return build_features(tagged, spec, keep=keep)


def feature_table(
    spark: SparkSession,
    config: JobConfig,
    sample_paths: dict[str, str],
    scales: dict[str, float] | None = None,
) -> DataFrame:
    """The labelled, weighted, split feature table of all samples, from their Parquet datasets."""
    parts = [
        labelled_features(
            spark.read.parquet(sample_paths[s.name]),
            config,
            sample=s.name,
            label=s.label,
            scale=(scales or {}).get(s.name, 1.0),
        )
        for s in config.samples
    ]
    table = parts[0]
    for part in parts[1:]:
        table = table.unionByName(part)
    return assign_split(table, config.split, event_id=config.features.event_id)


def constant_features(table: DataFrame, names: Sequence[str]) -> list[str]:
    """Feature columns with a single value over ``table`` (e.g. a slot that is always padding).

    Args:
        table: the rows to look at (the training split).
        names: the feature columns.

    Returns:
        The constant ones, in ``names`` order.
    """
    from pyspark.sql import functions as F

    aggregates = [F.min(n).alias(f"min{i}") for i, n in enumerate(names)]
    aggregates += [F.max(n).alias(f"max{i}") for i, n in enumerate(names)]
    row = table.agg(*aggregates).first()
    return [n for i, n in enumerate(names) if row[f"min{i}"] == row[f"max{i}"]]


def run_train_job(spark: SparkSession, config: JobConfig) -> TrainReport:
    """Run the whole train job of ``config``.

    Args:
        spark: the session (``root`` data source registered, e.g. from ``build_session``).
        config: the validated job config.

    Returns:
        Event counts, features, metrics, timings and the registered version.

    Raises:
        ValueError: when every feature is constant in the training data, or for weights that
            the chosen engine cannot take.
        TrackingServerUnreachable: at the start (nothing done), or after training (the fitted
            model is kept under ``<output>/model``; see :func:`register_saved_model`).
    """
    import mlflow

    report = TrainReport(engine=config.model.engine, kfold=config.split.kfold)
    report.tracking_uri = configure_tracking()
    require_tracking_server(report.tracking_uri, when="at the start of the train job")
    output = config.output.rstrip("/")
    sample_paths = {s.name: sample_output(config, s.name) for s in config.samples}

    with report.step("ingest"):
        report.events = convert_samples(spark, config, branches=config.features.branches_to_read())

    with report.step("features"):
        scales = sample_scales(spark, config, sample_paths)
        table_path = f"{output}/features"
        with atomic_directory(spark, table_path) as temporary:
            feature_table(spark, config, sample_paths, scales).write.parquet(temporary)
        table = spark.read.parquet(table_path)
        report.split_events = {
            row[SPLIT_COLUMN]: row["count"] for row in table.groupBy(SPLIT_COLUMN).count().collect()
        }
        declared = config.features.feature_names()
        report.dropped_features = constant_features(
            table.filter(f"{SPLIT_COLUMN} = 'train'"), declared
        )
        report.features = [n for n in declared if n not in report.dropped_features]
        if report.dropped_features:
            log.warning(
                "dropping %d features constant in the training data: %s",
                len(report.dropped_features),
                ", ".join(report.dropped_features),
            )
        if not report.features:
            raise ValueError(
                f"all {len(declared)} declared features are constant in the training data "
                f"({', '.join(declared)}); there is nothing to train on"
            )

    spark.sparkContext.setCheckpointDir(f"{output}/checkpoints")
    mlflow.set_experiment(config.mlflow.experiment)
    run = mlflow.start_run(run_name=config.name)
    try:
        report.run_id = run.info.run_id
        _log_inputs(config, report, table, table_path)

        with report.step("train"):
            fit_rows = table.filter(f"{SPLIT_COLUMN} in ('train', 'validation')")
            frame = spread_over_cores(
                training_weights(fit_rows, config.weights, engine=config.model.engine)
            )
            frame = frame.withColumn(VALIDATION, frame[SPLIT_COLUMN] == "validation").cache()
            early_stopping = config.split.validation > 0
            validation = table.filter(f"{SPLIT_COLUMN} = 'validation'")

            def fit(rows: DataFrame, params: dict[str, Any] | None = None) -> PipelineModel:
                return fit_pipeline(
                    rows,
                    report.features,
                    config.model,
                    params=params,
                    early_stopping=early_stopping,
                )

            if config.search.points:
                trials = run_search(
                    config.search.points,
                    fit=lambda params: fit(frame, dict(params)),
                    validation=validation,
                    parent_run_id=report.run_id,
                    parallelism=config.search.parallelism,
                )
                best = best_trial(trials)
                report.trials, report.best_params = len(trials), dict(best.params)
                mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
                mlflow.log_metric("best_validation_auc", best.validation_auc)
            if config.split.kfold:
                models = train_folds(
                    frame,
                    lambda rows: fit(rows, report.best_params),
                    k=config.split.kfold,
                    event_id=config.features.event_id,
                )
                model = models[0]
            else:
                model = fit(frame, report.best_params)

        with report.step("evaluate"):
            test = table.filter(f"{SPLIT_COLUMN} = 'test'")
            train = table.filter(f"{SPLIT_COLUMN} = 'train'")
            if config.split.kfold:
                event_id = config.features.event_id
                test_scores = collect_scores(score_out_of_fold(test, models, event_id=event_id))
                # model f+1 (mod k) was trained on fold f: in-sample scores for the KS check
                rotated = [*models[1:], models[0]]
                train_scores = collect_scores(score_out_of_fold(train, rotated, event_id=event_id))
            else:
                test_scores = collect_scores(model.transform(test))
                train_scores = collect_scores(model.transform(train))
            report.metrics = {
                **physics_metrics(*test_scores),
                **overtraining_metrics(train_scores, test_scores),
            }
            report.test_auc = report.metrics["test_auc"].value
            report.plots = _plots(
                model,
                Path(output) / "plots",
                frame,
                train_scores,
                test_scores,
                validation=early_stopping,
            )
            frame.unpersist()
            report.metrics_path = f"{output}/metrics.json"
            Path(report.metrics_path).write_text(
                json.dumps({k: m.to_dict() for k, m in report.metrics.items()}, indent=2) + "\n"
            )

        model_dir = fitted_model_dir(config)
        if not config.split.kfold:
            save_fitted_model(spark, model, report, model_dir)
        require_tracking_server(
            report.tracking_uri,
            when=f"after training; the fitted model is kept in {model_dir}: register it with "
            f"`sparkhep train --config {config.source} --register-only {model_dir}`"
            if not config.split.kfold
            else "after training",
        )

        with report.step("log"):
            mlflow.log_metrics(_run_metrics(report))
            mlflow.log_artifact(report.metrics_path)
            for path in report.plots:
                mlflow.log_artifact(path, artifact_path="plots")
            if config.split.kfold:
                for index, fold_model in enumerate(models):
                    import mlflow.spark

                    mlflow.spark.log_model(
                        fold_model,
                        artifact_path=f"folds/fold_{index}",
                        pip_requirements=spark_pip_requirements(),
                    )

        if not config.split.kfold:
            with report.step("register"):
                _register(spark, model, config, report, test=test)
    except TrackingServerUnreachable:
        _abandon_run()
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run()
    return report


def _abandon_run() -> None:
    """Close the active run locally when its tracking server is gone.

    MLflow's client retries an unreachable server with backoff for minutes; one attempt without
    retries (it fails at once) lets the job stop with its clear message instead.
    """
    import contextlib
    import os

    import mlflow

    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    with contextlib.suppress(Exception):
        mlflow.end_run("FAILED")


def fitted_model_dir(config: JobConfig) -> str:
    """Where the train job keeps the fitted model and its report: ``<output>/model``."""
    return f"{config.output.rstrip('/')}/model"


def save_fitted_model(
    spark: SparkSession, model: PipelineModel, report: TrainReport, path: str
) -> None:
    """Keep the fitted pipeline (``<path>/pipeline``) and its report (``<path>/report``, JSON).

    Written before MLflow is contacted after training, so that a tracking server that went away
    costs a registration, not a training: :func:`register_saved_model` picks it up.
    """
    with atomic_directory(spark, path) as temporary:
        model.write().save(f"{temporary}/pipeline")
        spark.createDataFrame([(json.dumps(asdict(report)),)], "report string").coalesce(
            1
        ).write.text(f"{temporary}/report")
    log.info("fitted model kept in %s", path)


def register_saved_model(spark: SparkSession, config: JobConfig, model_dir: str) -> TrainReport:
    """Log and register a model that an earlier train job kept, without retraining.

    The new run gets the earlier job's params, metrics, config, metrics table and plots (when
    they are still on this machine) and the model.

    Args:
        spark: the session (to load the Spark pipeline).
        config: the job config (experiment and registered model name).
        model_dir: the ``<output>/model`` directory of the earlier job.

    Returns:
        The earlier job's report with the new run and model version.

    Raises:
        FileNotFoundError: ``model_dir`` holds no kept model.
        TrackingServerUnreachable: the tracking server still does not answer.
    """
    import mlflow
    from pyspark.ml import PipelineModel

    from sparkhep.storage import path_exists

    for part in ("pipeline", "report"):
        if not path_exists(spark, f"{model_dir}/{part}"):
            raise FileNotFoundError(
                f"no fitted model kept in {model_dir!r}: expected {model_dir}/{part}, written by "
                "`sparkhep train` before its register step"
            )
    tracking = configure_tracking()
    require_tracking_server(tracking, when=f"to register the model kept in {model_dir}")
    model = PipelineModel.load(f"{model_dir}/pipeline")
    saved = json.loads(spark.read.text(f"{model_dir}/report").first().value)
    report = TrainReport(**{**saved, "metrics": {}})
    report.metrics = {name: Metric(**m) for name, m in saved["metrics"].items()}
    report.tracking_uri = tracking
    mlflow.set_experiment(config.mlflow.experiment)
    with mlflow.start_run(run_name=config.name) as run:
        report.run_id = run.info.run_id
        mlflow.set_tag("sparkhep.registered_from", model_dir)
        mlflow.log_params(_run_params(config, report))
        mlflow.log_metrics(_run_metrics(report))
        mlflow.log_dict(dict(config.raw), "config/job.json")
        for path in [report.metrics_path, *report.plots]:
            if path and Path(path).is_file():
                mlflow.log_artifact(
                    path, artifact_path=None if path == report.metrics_path else "plots"
                )
        features = f"{config.output.rstrip('/')}/features"
        test = (
            spark.read.parquet(features).filter(f"{SPLIT_COLUMN} = 'test'")
            if path_exists(spark, features)
            else None
        )
        _register(spark, model, config, report, test=test)
    return report


def _log_inputs(config: JobConfig, report: TrainReport, table: DataFrame, table_path: str) -> None:
    """Params, effective config, feature spec, input manifest, git commit, datasets."""
    import mlflow
    import mlflow.data

    manifest = input_manifest(config)
    mlflow.log_params(
        {
            **_run_params(config, report),
            "input_files": len(manifest),
            "input_bytes": sum(row["bytes"] or 0 for row in manifest),
        }
    )
    mlflow.set_tag("git_commit", git_commit() or "unknown")
    mlflow.log_dict(dict(config.raw), "config/job.json")
    mlflow.log_dict(config.features.to_dict(), "config/feature_spec.json")
    mlflow.log_dict(
        {"features": report.features, "dropped_constant": report.dropped_features},
        "config/features_used.json",
    )
    mlflow.log_dict({"files": manifest}, "lineage/input_files.json")
    dataset = mlflow.data.from_spark(table, path=table_path, name=f"{config.name}-features")
    mlflow.log_input(dataset, context="training")


def _run_params(config: JobConfig, report: TrainReport) -> dict[str, Any]:
    """The run's params: engine and its parameters, features, split, weights, config file."""
    return {
        "engine": config.model.engine,
        **{f"model.{k}": v for k, v in config.model.params.items()},
        "features": ",".join(report.features),
        "n_features": len(report.features),
        "dropped_features": ",".join(report.dropped_features),
        "split": json.dumps(
            {
                "train": config.split.train,
                "validation": config.split.validation,
                "test": config.split.test,
                "kfold": config.split.kfold,
            }
        ),
        "weights": json.dumps(
            {
                "lumi": config.weights.lumi,
                "balance_classes": config.weights.balance_classes,
                "negative": config.weights.negative,
            }
        ),
        "config_file": str(config.source),
    }


def _run_metrics(report: TrainReport) -> dict[str, float]:
    """The run's metrics: each figure with its error and N_eff, event counts, step times."""
    return {
        **{name: m.value for name, m in report.metrics.items()},
        **{f"{name}_err": m.error for name, m in report.metrics.items()},
        **{f"{name}_n_eff": m.n_eff for name, m in report.metrics.items()},
        **{f"events_{name}": n for name, n in report.events.items()},
        **{f"events_split_{name}": n for name, n in report.split_events.items()},
        **{f"time_{step}_s": t for step, t in report.timings.items()},
    }


def _plots(
    model: PipelineModel,
    directory: Path,
    frame: DataFrame,
    train_scores: tuple,
    test_scores: tuple,
    *,
    validation: bool,
) -> list[str]:
    """ROC, score distributions, importances and loss curves as PNG files in ``directory``."""
    paths = [
        plots.roc_plot(test_scores, directory / "roc.png"),
        plots.score_plot(train_scores, test_scores, directory / "scores.png"),
    ]
    importances = feature_importances(model)
    if importances:
        paths.append(plots.importance_plot(importances, directory / "feature_importance.png"))
    curves, ylabel = loss_curves(
        model,
        train=frame.filter(~frame[VALIDATION]),
        validation=frame.filter(frame[VALIDATION]) if validation else None,
    )
    if curves:
        paths.append(plots.loss_plot(curves, directory / "loss.png", ylabel=ylabel))
    return [str(p) for p in paths]


# --- register: log the fitted pipeline as the run's model and register a new version ----------
def _register(
    spark: SparkSession,
    model: PipelineModel,
    config: JobConfig,
    report: TrainReport,
    *,
    test: DataFrame | None,
) -> None:
    """Log the two-flavor model, register a version and apply ``mlflow.promote`` to its alias.

    A couple of raw events of the first sample (the feature spec's branches) document the
    raw-event input form beside the model; their features are its input example.
    """
    spec = config.features
    first = config.samples[0].name
    raw_example = (
        spark.read.parquet(sample_output(config, first)).select(*spec.branches()).limit(2).toArrow()
    )
    version = log_and_register(
        model,
        registered_model=config.mlflow.registered_model,
        feature_spec=spec,
        feature_names=report.features,
        raw_example=raw_example,
        engine=config.model.engine,
    )
    report.registered_model = version.name
    report.model_version = str(version.version)
    alias = config.mlflow.alias
    if config.mlflow.promote == "always":
        promote(version.name, version.version, alias=alias)
        report.alias, report.promotion = alias, "promote = 'always'"
    elif config.mlflow.promote == "if_better":
        decision = promote_if_better(
            version.name,
            str(version.version),
            alias=alias,
            new_auc=report.test_auc,
            spec=spec,
            test=test,
        )
        report.alias = alias if decision.promoted else ""
        report.promotion = decision.reason
    else:
        report.promotion = f"promote = 'never': {alias!r} left where it was"
