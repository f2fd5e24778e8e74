"""The whole train job on a small synthetic sample, its bad inputs, and batch scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
from sparkhep.config import load_config
from sparkhep.generate import write_sample
from sparkhep.predict import REPORT_FILE, SCORE_COLUMN, run_predict_job
from sparkhep.registry.flavor import load_model
from sparkhep.train.job import run_train_job

REPO = Path(__file__).resolve().parents[1]
EVENTS_PER_KIND = 3000
EVENT_ID = ["run", "luminosityBlock", "event"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("synthetic")
    write_sample(directory, kind="signal", n_events=EVENTS_PER_KIND, n_files=2, seed=11)
    write_sample(directory, kind="background", n_events=EVENTS_PER_KIND, n_files=2, seed=12)
    return directory


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


def _config(tmp_path: Path, synthetic: Path, *extra: str):
    overrides = [
        f"job.output='{tmp_path / 'out'}'",
        f"samples.synthetic_ttbar.paths=['{synthetic}/synthetic_signal_*.root']",
        f"samples.synthetic_qcd.paths=['{synthetic}/synthetic_background_*.root']",
        "model.gbt.maxIter=10",
        "mlflow.registered_model='job-test'",
        "mlflow.experiment='job-test'",
        *extra,
    ]
    return load_config(REPO / "conf/jobs/demo.toml", overrides=overrides)


@pytest.fixture(scope="module")
def trained(spark, synthetic, tracking, tmp_path_factory):
    config = _config(tmp_path_factory.mktemp("job"), synthetic)
    return config, run_train_job(spark, config)


@pytest.mark.slow
def test_job_registers_a_version_with_its_metrics(trained, tracking):
    config, report = trained
    assert report.events == {"synthetic_ttbar": EVENTS_PER_KIND, "synthetic_qcd": EVENTS_PER_KIND}
    assert sum(report.split_events.values()) == 2 * EVENTS_PER_KIND
    assert set(report.split_events) == {"train", "validation", "test"}
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    version = client.get_model_version("job-test", report.model_version)
    assert version.run_id == report.run_id
    run = client.get_run(report.run_id)
    assert run.data.metrics["test_auc"] == pytest.approx(report.test_auc)
    assert 0.8 < report.test_auc <= 1.0
    assert run.data.metrics["events_synthetic_ttbar"] == EVENTS_PER_KIND
    assert run.data.params["model.maxIter"] == "10"
    declared = config.features.feature_names()
    assert report.features == [n for n in declared if n not in report.dropped_features]
    assert run.data.params["n_features"] == str(len(report.features))
    assert set(report.timings) == {"ingest", "features", "train", "evaluate", "log", "register"}


@pytest.mark.slow
def test_job_writes_samples_and_feature_table_without_temporaries(trained, spark):
    config, _ = trained
    out = Path(config.output)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "features",
        "metrics.json",
        "model",
        "plots",
        "samples",
    ]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "synthetic_qcd",
        "synthetic_ttbar",
    ]
    sample = spark.read.parquet(str(out / "samples" / "synthetic_qcd"))
    assert sample.columns == config.features.branches_to_read()
    table = spark.read.parquet(str(out / "features"))
    assert table.count() == 2 * EVENTS_PER_KIND
    assert table.columns[:7] == [
        "run",
        "luminosityBlock",
        "event",
        "sample",
        "label",
        "weight",
        "Jet1_pt",
    ]


def test_glob_matching_nothing_fails_and_leaves_nothing(spark, synthetic, tmp_path):
    config = _config(
        tmp_path, synthetic, f"samples.synthetic_qcd.paths=['{synthetic}/nothing_*.root']"
    )
    with pytest.raises(FileNotFoundError, match="nothing_"):
        run_train_job(spark, config)
    assert _leftovers(tmp_path / "out") == []


def test_branch_missing_in_files_is_named_with_closest(spark, synthetic, tmp_path):
    config = _config(tmp_path, synthetic, "features.event.MET_pt.branch='MET_ptt'")
    with pytest.raises(Exception, match=r"MET_ptt[\s\S]*MET_pt"):
        run_train_job(spark, config)
    assert _leftovers(tmp_path / "out") == []


def test_file_that_is_not_root_is_named(spark, synthetic, tmp_path):
    bad = tmp_path / "inputs"
    shutil.copytree(synthetic, bad)
    (bad / "synthetic_background_9.root").write_text("this is not a ROOT file\n")
    config = _config(tmp_path, bad)
    with pytest.raises(Exception, match=r"synthetic_background_9\.root"):
        run_train_job(spark, config)
    assert _leftovers(tmp_path / "out") == []


def _leftovers(out: Path) -> list[str]:
    """Files under the output: a failed job must leave no partial sample or temporary."""
    if not out.exists():
        return []
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


# --- batch scoring (sparkhep predict) with the model the job registered -------------------------


@pytest.fixture(scope="module")
def model_uri(trained):
    _, report = trained
    return f"models:/{report.registered_model}/{report.model_version}"


def _scores(path: Path) -> dict[tuple[int, int, int], float]:
    table = pq.read_table(path, columns=[*EVENT_ID, SCORE_COLUMN]).to_pydict()
    keys = zip(*(table[c] for c in EVENT_ID), strict=True)
    return dict(zip(keys, table[SCORE_COLUMN], strict=True))


@pytest.mark.slow
def test_predict_parquet_samples_scored_like_the_numpy_scorer(spark, trained, model_uri, tmp_path):
    config, _ = trained
    sample = Path(config.output) / "samples" / "synthetic_ttbar"
    report = run_predict_job(
        spark, model_uri=model_uri, inputs=[str(sample)], output=str(tmp_path / "scores")
    )
    assert report.input_form == "raw"
    assert report.rows == EVENTS_PER_KIND
    written = spark.read.parquet(str(tmp_path / "scores"))
    assert written.columns == [*EVENT_ID, SCORE_COLUMN]
    assert written.count() == EVENTS_PER_KIND
    assert written.select(*EVENT_ID).distinct().count() == EVENTS_PER_KIND

    raw = pq.read_table(sample).to_pandas()
    expected = load_model(model_uri).predict_frame(raw)
    keys = list(zip(*(raw[c] for c in EVENT_ID), strict=True))
    scores = _scores(tmp_path / "scores")
    got = np.array([scores[k] for k in keys])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert 0.0 < got.min() < got.max() < 1.0

    record = json.loads((tmp_path / "scores" / REPORT_FILE).read_text())
    assert record["model_uri"] == model_uri
    assert record["rows"] == EVENTS_PER_KIND


@pytest.mark.slow
def test_predict_root_files_and_feature_table_give_the_same_scores(
    spark, trained, synthetic, model_uri, tmp_path
):
    config, _ = trained
    from_root = run_predict_job(
        spark,
        model_uri=model_uri,
        inputs=[f"{synthetic}/synthetic_background_*.root"],
        output=str(tmp_path / "root"),
    )
    assert (from_root.input_form, from_root.rows) == ("raw", EVENTS_PER_KIND)
    from_table = run_predict_job(
        spark,
        model_uri=model_uri,
        inputs=[f"{config.output}/features"],
        output=str(tmp_path / "table"),
    )
    assert (from_table.input_form, from_table.rows) == ("features", 2 * EVENTS_PER_KIND)
    root_scores = _scores(tmp_path / "root")
    table_scores = _scores(tmp_path / "table")
    assert len(root_scores) == EVENTS_PER_KIND
    for key, score in root_scores.items():
        assert table_scores[key] == pytest.approx(score, abs=1e-12)


@pytest.mark.slow
def test_predict_refuses_events_without_id(spark, trained, model_uri, tmp_path):
    config, _ = trained
    no_id = tmp_path / "no_id"
    spark.read.parquet(f"{config.output}/samples/synthetic_qcd").drop("event").write.parquet(
        str(no_id)
    )
    # (the CLI would stop the session it shares with the other tests: call the job itself)
    with pytest.raises(KeyError, match=r"event id columns \['event'\]"):
        run_predict_job(
            spark, model_uri=model_uri, inputs=[str(no_id)], output=str(tmp_path / "scores")
        )
    assert not (tmp_path / "scores").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["no_id"]
