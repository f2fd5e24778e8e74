"""The three engines on the real Pythia samples, trained and evaluated with genWeight.

The QCD sample is generated with a p̂T⁴ bias; only genWeight makes it physical, so the AUC
targets hold for weighted training and weighted evaluation. The job runs once (GBT, the shipped
tthad config); the MLP and xgboost engines are fitted on the feature table it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pyspark.sql import functions as F
from sparkhep.config import load_config
from sparkhep.evaluate.metrics import METRIC_NAMES, physics_metrics
from sparkhep.evaluate.scores import collect_scores, signal_probability
from sparkhep.registry.flavor import load_model
from sparkhep.scoring import load_pipeline
from sparkhep.train.job import fitted_model_dir, run_train_job
from sparkhep.train.pipeline import VALIDATION, fit_pipeline
from sparkhep.train.weights import training_weights

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def pythia_job(spark, shared_data, tmp_path_factory):
    pythia = shared_data / "pythia"
    out = tmp_path_factory.mktemp("pythia")
    uri = f"sqlite:///{out / 'mlruns.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        config = load_config(
            REPO / "conf/jobs/tthad.toml",
            overrides=[
                f"job.output='{out / 'job'}'",
                f"samples.ttbar.paths=['{pythia}/ttbar_*.root']",
                f"samples.qcd.paths=['{pythia}/qcd_*.root']",
                "mlflow.experiment='pythia-test'",
                "mlflow.registered_model='pythia-test'",
            ],
        )
        report = run_train_job(spark, config)
        yield config, report, uri


@pytest.fixture(scope="module")
def feature_frame(spark, pythia_job):
    config, _, _ = pythia_job
    table = spark.read.parquet(f"{config.output}/features")
    return config, table


def _test_auc(model, table) -> float:
    scores = collect_scores(model.transform(table.filter("split = 'test'")))
    return physics_metrics(*scores, n_bootstrap=0)["test_auc"].value


def test_gbt_job_reaches_weighted_auc_and_logs_everything(pythia_job):
    config, report, uri = pythia_job
    assert report.test_auc >= 0.955
    assert set(report.metrics) == set(METRIC_NAMES)
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(report.run_id)
    for name in METRIC_NAMES:
        assert name in run.data.metrics
    artifacts = {
        a.path for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(report.run_id, "plots")
    }
    assert {
        "plots/roc.png",
        "plots/scores.png",
        "plots/feature_importance.png",
        "plots/loss.png",
    } <= artifacts
    assert json.loads(Path(report.metrics_path).read_text())["test_auc"]["value"] == report.test_auc
    # the Pythia selection keeps events with ≥ 4 jets: those slots are never padding
    assert {"Jet1_mask", "Jet4_mask"} <= set(report.dropped_features)
    assert "Jet_hadronFlavour" not in config.features.branches()
    assert run.data.tags["git_commit"]
    assert len(run.inputs.dataset_inputs) == 1


@pytest.fixture(scope="module")
def xgboost_model(feature_frame, pythia_job):
    config, table = feature_frame
    _, report, _ = pythia_job
    frame = _fit_rows(table, config, "xgboost")
    return fit_pipeline(frame, report.features, _engine(config, "xgboost"))


@pytest.fixture(scope="module")
def mlp_model(feature_frame, pythia_job):
    config, table = feature_frame
    _, report, _ = pythia_job
    frame = _fit_rows(table, config, "mlp")
    return fit_pipeline(frame, report.features, _engine(config, "mlp"))


def test_xgboost_reaches_weighted_auc(feature_frame, xgboost_model):
    _, table = feature_frame
    assert _test_auc(xgboost_model, table) >= 0.955


def test_mlp_reaches_weighted_auc(feature_frame, mlp_model):
    _, table = feature_frame
    assert _test_auc(mlp_model, table) >= 0.93


def test_registered_gbt_scores_the_test_split_as_spark_does(pythia_job, feature_frame):
    """The registered version, loaded by the numpy scorer, against Spark's kept pipeline."""
    from pyspark.ml import PipelineModel

    config, report, _ = pythia_job
    _, table = feature_frame
    numpy_model = load_model(f"models:/{report.registered_model}/{report.model_version}")
    assert numpy_model.engine == "gbt"
    assert numpy_model.feature_names == report.features
    spark_model = PipelineModel.load(f"{fitted_model_dir(config)}/pipeline")
    difference = _max_difference(spark_model, numpy_model.predict_matrix, table, report.features)
    print(f"Pythia test split, gbt: max |numpy - Spark| = {difference:.3g}")
    assert difference <= 1e-9


@pytest.mark.parametrize(("engine", "tolerance"), [("mlp", 1e-9), ("xgboost", 1e-6)])
def test_numpy_scores_the_test_split_as_spark_does(
    engine, tolerance, request, feature_frame, pythia_job, tmp_path
):
    _, report, _ = pythia_job
    _, table = feature_frame
    model = request.getfixturevalue(f"{engine}_model")
    model.write().save(str(tmp_path / "pipeline"))
    scorer = load_pipeline(tmp_path / "pipeline")
    assert scorer.engine == engine
    difference = _max_difference(model, scorer.predict_matrix, table, report.features)
    print(f"Pythia test split, {engine}: max |numpy - Spark| = {difference:.3g}")
    assert difference <= tolerance


def _max_difference(spark_model, predict, table, features) -> float:
    test = table.filter("split = 'test'")
    scored = spark_model.transform(test).select(signal_probability().alias("p_spark"), *features)
    frame = scored.toPandas()
    assert len(frame) > 1000
    return float(np.abs(predict(frame[features].to_numpy()) - frame["p_spark"].to_numpy()).max())


def _engine(config, engine):
    return load_config(config.source, overrides=[f"model.engine='{engine}'"]).model


def _fit_rows(table, config, engine):
    rows = table.filter("split in ('train', 'validation')")
    weighted = training_weights(rows, config.weights, engine=engine)
    return weighted.withColumn(VALIDATION, F.col("split") == "validation")
