"""Batch scoring in Spark: a registered model over a whole dataset, scores out as Parquet.

``sparkhep predict`` / ``jobs/predict.py``: extract (raw events from Parquet, e.g. the convert
job's output, or from ROOT files through the ``root`` source; or a feature table) → transform
(the model's own feature spec through the same ``mapInArrow`` code as training, then the Spark
pipeline of the model's ``spark`` flavor) → load (the event id columns plus ``score`` =
P(signal), written to a temporary directory and moved into place when complete).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sparkhep.evaluate.scores import signal_probability
from sparkhep.features.spark import build_features
from sparkhep.features.spec import FeatureSpec
from sparkhep.scoring.model import SPARK_MODEL_DIR, read_model_features
from sparkhep.storage import atomic_directory, write_text

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SCORE_COLUMN = "score"
REPORT_FILE = "_predict.json"
INPUT_FORMATS = ("auto", "parquet", "root")


@dataclass(frozen=True)
class PredictReport:
    """What a predict job did: which model, how many events, where the scores are."""

    model_uri: str
    output: str
    input_form: str
    rows: int
    seconds: float
    columns: tuple[str, ...]


@dataclass(frozen=True)
class BatchModel:
    """A sparkhep model as Spark scores it: the pipeline and the features it reads."""

    pipeline: PipelineModel
    spec: FeatureSpec
    feature_names: tuple[str, ...]


def load_batch_model(model_uri: str) -> BatchModel:
    """The Spark pipeline and feature spec of a sparkhep model (``models:/tthad@champion``, …).

    The artifacts are downloaded once, to a temporary directory; ``mlflow.spark.load_model``
    then loads the local copy (on a cluster it copies it to the distributed filesystem for the
    executors).

    Args:
        model_uri: any MLflow model URI or a local model directory.

    Returns:
        The model.

    Raises:
        FileNotFoundError: the model was not logged by sparkhep (no feature spec).
    """
    import mlflow.spark
    from mlflow.artifacts import download_artifacts

    from sparkhep.registry.tracking import configure_tracking

    configure_tracking()
    # The stages read their data when loaded, so the downloaded copy can go afterwards.
    with tempfile.TemporaryDirectory(prefix="sparkhep-predict-") as scratch:
        local = Path(download_artifacts(artifact_uri=model_uri, dst_path=scratch))
        spec, names = read_model_features(local)
        if names is None or not (local / SPARK_MODEL_DIR).is_dir():
            raise FileNotFoundError(
                f"{model_uri}: a sparkhep model has its feature columns and a Spark pipeline "
                f"({SPARK_MODEL_DIR}/); this one lacks them"
            )
        pipeline = mlflow.spark.load_model(str(local))
    return BatchModel(pipeline=pipeline, spec=spec, feature_names=tuple(names))


def read_events(
    spark: SparkSession,
    paths: Sequence[str],
    *,
    spec: FeatureSpec,
    input_format: str = "auto",
    tree: str = "Events",
) -> DataFrame:
    """The events to score: Parquet datasets, or ROOT files through the ``root`` source.

    ``auto`` reads ROOT when every path ends in ``.root`` (globs allowed), Parquet otherwise.
    From ROOT only the branches the features and the event id need are read (the data source
    does not prune columns itself).

    Args:
        spark: the session.
        paths: files, directories or globs.
        spec: the model's feature spec.
        input_format: ``auto``, ``parquet`` or ``root``.
        tree: the TTree (or RNTuple) of ROOT inputs.

    Returns:
        The lazy events.
    """
    from sparkhep.root import read_root

    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input format {input_format!r}: expected one of {INPUT_FORMATS!r}")
    if input_format == "auto":
        is_root = all(p.rstrip("/").endswith(".root") for p in paths)
        input_format = "root" if is_root else "parquet"
    if input_format == "root":
        branches = [*spec.event_id, *spec.branches()]
        return read_root(spark, list(paths), tree=tree, branches=list(dict.fromkeys(branches)))
    return spark.read.parquet(*paths)


def score_events(events: DataFrame, model: BatchModel) -> tuple[DataFrame, str]:
    """Event id columns plus ``score`` (P(signal)) for every event.

    Raw events get their features from the model's spec (the code the training job ran); a
    table that already holds every feature column (a training feature table) is scored as it is.

    Args:
        events: raw events or a feature table, with the spec's event id columns.
        model: the loaded model.

    Returns:
        The scored events and the input form (``raw`` or ``features``).

    Raises:
        KeyError: the events lack the event id columns, or both the feature columns and the
            raw branches (naming what is missing).
    """
    event_id = list(model.spec.event_id)
    missing_id = [c for c in event_id if c not in events.columns]
    if missing_id:
        raise KeyError(
            f"the events lack the event id columns {missing_id!r} that the scores are keyed by; "
            f"they have {events.columns!r}"
        )
    if all(name in events.columns for name in model.feature_names):
        form, features = "features", events
    else:
        missing_raw = [b for b in model.spec.branches() if b not in events.columns]
        if missing_raw:
            missing_features = [n for n in model.feature_names if n not in events.columns]
            raise KeyError(
                f"the events are neither raw events (missing branches {missing_raw!r}) nor a "
                f"feature table (missing features {missing_features!r})"
            )
        form, features = "raw", build_features(events, model.spec, keep=event_id)
    scored = model.pipeline.transform(features)
    return scored.select(*event_id, signal_probability().alias(SCORE_COLUMN)), form


def run_predict_job(
    spark: SparkSession,
    *,
    model_uri: str,
    inputs: Sequence[str],
    output: str,
    input_format: str = "auto",
    tree: str = "Events",
) -> PredictReport:
    """Score ``inputs`` with ``model_uri`` and write event id + ``score`` Parquet to ``output``.

    ``output`` appears only when complete (temporary sibling, then rename), with a
    ``_predict.json`` beside the data naming the model, the inputs and the row count.

    Args:
        spark: the session.
        model_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/…`` or a
            local model directory.
        inputs: Parquet datasets or ROOT files (globs allowed).
        output: the Parquet dataset to write (replaced if it exists).
        input_format: ``auto``, ``parquet`` or ``root``.
        tree: the tree of ROOT inputs.

    Returns:
        What was done.
    """
    start = time.monotonic()
    model = load_batch_model(model_uri)
    events = read_events(spark, inputs, spec=model.spec, input_format=input_format, tree=tree)
    scores, form = score_events(events, model)
    with atomic_directory(spark, output) as temporary:
        scores.write.parquet(temporary, compression="zstd")
        rows = spark.read.parquet(temporary).count()
        report = PredictReport(
            model_uri=model_uri,
            output=output,
            input_form=form,
            rows=rows,
            seconds=time.monotonic() - start,
            columns=tuple(scores.columns),
        )
        record = {**asdict(report), "inputs": list(inputs), "features": model.feature_names}
        write_text(spark, f"{temporary}/{REPORT_FILE}", json.dumps(record, indent=2) + "\n")
    log.info("scored %d events (%s form) with %s into %s", rows, form, model_uri, output)
    return report
