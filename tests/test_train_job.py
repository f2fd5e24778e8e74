"""The whole train job on a small synthetic sample, and its bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from sparkhep.config import load_config
from sparkhep.generate import write_sample
from sparkhep.train.job import run_train_job

REPO = Path(__file__).resolve().parents[1]
EVENTS_PER_KIND = 3000


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
