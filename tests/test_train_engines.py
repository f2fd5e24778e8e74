"""K-fold scoring, the search's child runs, weights policies — on a small in-memory table."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import functions as F
from sparkhep.config import ModelConfig, WeightsConfig
from sparkhep.train.kfold import FOLD_COLUMN, fold_of, score_out_of_fold, train_folds
from sparkhep.train.pipeline import (
    VALIDATION,
    estimated_bytes,
    fit_pipeline,
    spread_over_cores,
)
from sparkhep.train.search import best_trial, run_search
from sparkhep.train.weights import TRAIN_WEIGHT, training_weights

EVENT_ID = ["run", "luminosityBlock", "event"]
FEATURES = ["x1", "x2"]


@pytest.fixture(scope="module")
def table(spark):
    rng = np.random.default_rng(1)
    n = 2000
    labels = rng.integers(0, 2, n).astype(float)
    rows = [
        (1, i // 100, i, float(labels[i]), float(rng.exponential(1.0)),
         float(rng.normal(labels[i], 1.0)), float(rng.normal(-labels[i], 1.0)),
         "validation" if i % 5 == 0 else "train")
        for i in range(n)
    ]  # fmt: skip
    columns = [*EVENT_ID, "label", "weight", *FEATURES, "split"]
    frame = spark.createDataFrame(rows, columns)
    return training_weights(frame, WeightsConfig(), engine="gbt").withColumn(
        VALIDATION, F.col("split") == "validation"
    )


def test_kfold_scoring_never_uses_a_model_on_its_training_events(table):
    k = 3
    trained_on: dict[int, set[int]] = {}

    def fit(rows):
        index = len(trained_on)
        trained_on[index] = {r.event for r in rows.select("event").collect()}
        return SQLTransformer(statement=f"SELECT *, {index} AS model_index FROM __THIS__")

    models = train_folds(table, fit, k=k, event_id=EVENT_ID)
    scored = score_out_of_fold(table, models, event_id=EVENT_ID).select(
        "event", FOLD_COLUMN, "model_index"
    )
    rows = scored.collect()
    assert len(rows) == table.count()  # every event scored exactly once
    assert len({r.event for r in rows}) == len(rows)
    for row in rows:
        assert row.model_index == row[FOLD_COLUMN]
        assert row.event not in trained_on[row.model_index]
    folds = {r.event: r[FOLD_COLUMN] for r in rows}
    for index, events in trained_on.items():
        assert events == {e for e, f in folds.items() if f != index}


def test_fold_is_pmod_of_the_event_hash(table):
    expected = table.select(F.expr("pmod(xxhash64(run, luminosityBlock, event), 2)").alias("f"))
    actual = table.select(fold_of(EVENT_ID, 2).alias("f"))
    assert [r.f for r in actual.collect()] == [r.f for r in expected.collect()]


def test_search_records_one_child_run_per_point(table, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("search-test")
    model = ModelConfig(engine="gbt", params={"maxIter": 3, "maxBins": 16})
    points = [{"maxDepth": 2}, {"maxDepth": 3}, {"maxDepth": 4, "stepSize": 0.3}]
    validation = table.filter("split = 'validation'")
    with mlflow.start_run() as parent:
        trials = run_search(
            points,
            fit=lambda p: fit_pipeline(table, FEATURES, model, params=dict(p)),
            validation=validation,
            parent_run_id=parent.info.run_id,
            parallelism=2,
        )
    children = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", output_format="list"
    )
    assert len(children) == len(points)
    assert sorted(c.data.params["maxDepth"] for c in children) == ["2", "3", "4"]
    assert all(0.5 < c.data.metrics["validation_auc"] <= 1 for c in children)
    assert [t.params for t in trials] == points
    assert best_trial(trials).validation_auc == max(t.validation_auc for t in trials)


def test_negative_weights_are_refused_on_mllib_without_a_policy(table):
    negative = table.withColumn(
        "weight", F.when(F.col("event") == 3, -1.0).otherwise(F.col("weight"))
    )
    with pytest.raises(ValueError, match=r"1 training events have negative weights.*clip"):
        training_weights(negative, WeightsConfig(), engine="gbt")
    kept = training_weights(negative, WeightsConfig(), engine="xgboost")
    assert kept.filter(f"{TRAIN_WEIGHT} < 0").count() == 1
    clipped = training_weights(negative, WeightsConfig(negative="clip"), engine="gbt")
    assert clipped.filter(f"{TRAIN_WEIGHT} < 0").count() == 0
    absolute = training_weights(negative, WeightsConfig(negative="abs"), engine="mlp")
    assert absolute.filter(f"event = 3 and {TRAIN_WEIGHT} > 0").count() == 1


def test_class_balancing_gives_mean_one_per_class(table):
    means = {
        r.label: r.mean
        for r in table.filter("split = 'train'")
        .groupBy("label")
        .agg(F.mean(TRAIN_WEIGHT).alias("mean"))
        .collect()
    }
    assert means == {0.0: pytest.approx(1.0), 1.0: pytest.approx(1.0)}


@pytest.mark.slow
def test_mlp_and_xgboost_pipelines_have_the_contracted_stages(table):
    mlp = fit_pipeline(
        table, FEATURES, ModelConfig(engine="mlp", params={"maxIter": 20}, hidden_layers=(4,))
    )
    assembler, scaler, classifier = mlp.stages
    assert assembler.getOutputCol() == "features" and assembler.getInputCols() == FEATURES
    assert (scaler.getWithMean(), scaler.getWithStd(), scaler.getOutputCol()) == (
        True, True, "features_scaled"
    )  # fmt: skip
    assert classifier.getLayers() == [2, 4, 2]
    assert classifier.getFeaturesCol() == "features_scaled"
    xgb = fit_pipeline(table, FEATURES, ModelConfig(engine="xgboost", params={"n_estimators": 5}))
    assert type(xgb.stages[-1]).__name__ == "SparkXGBClassifierModel"
    probabilities = xgb.transform(table).select("probability").limit(3).collect()
    assert all(len(r.probability) == 2 for r in probabilities)


def test_fit_rows_are_spread_over_as_many_partitions_as_cores(table, tmp_path):
    cores = table.sparkSession.sparkContext.defaultParallelism
    table.repartition(cores + 1).write.parquet(str(tmp_path / "rows"))
    read = table.sparkSession.read.parquet(str(tmp_path / "rows"))
    uneven = read.repartition(cores + 1)
    spread = spread_over_cores(uneven)
    assert spread.rdd.getNumPartitions() == cores
    assert sorted(spread.select("event").toPandas()["event"]) == list(range(2000))
    assert spread_over_cores(spread) is spread  # already right: no shuffle added
    # a frame estimated above cores x partition_bytes gets the next multiple of the cores
    estimated = estimated_bytes(uneven)
    bigger = spread_over_cores(uneven, partition_bytes=estimated // (2 * cores) + 1)
    assert bigger.rdd.getNumPartitions() == 2 * cores
    # rows from Python have no size estimate: whole waves of the partitions they have
    assert estimated_bytes(table) is None
    assert spread_over_cores(table.repartition(2 * cores + 1)).rdd.getNumPartitions() == 2 * cores
