"""The train job's two-flavor model in the registry: flavors, pyfunc, promote and the alias rule.

Two train jobs on one small synthetic sample register version 1 (GBT, 10 trees) and version 2
(one stump: worse); the ``if_better`` rule must give ``champion`` to the first and keep it there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sparkhep.cli import main
from sparkhep.config import ConfigError, load_config
from sparkhep.features.spec import FeatureSpec
from sparkhep.generate import write_sample
from sparkhep.registry.flavor import LOADER_MODULE, load_model
from sparkhep.registry.promotion import alias_holder, promote, promote_if_better
from sparkhep.train.job import run_train_job

REPO = Path(__file__).resolve().parents[1]
NAME = "registry-test"
EVENTS_PER_KIND = 2000


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A SQLite registry, artifacts beside it (the working directory is the tmp dir)."""
    directory = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{directory / 'mlruns.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(directory)
        yield uri, directory
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def jobs(spark, registry, tmp_path_factory):
    synthetic = tmp_path_factory.mktemp("synthetic")
    write_sample(synthetic, kind="signal", n_events=EVENTS_PER_KIND, n_files=1, seed=21)
    write_sample(synthetic, kind="background", n_events=EVENTS_PER_KIND, n_files=1, seed=22)
    output = tmp_path_factory.mktemp("job")

    def config(*extra: str):
        return load_config(
            REPO / "conf/jobs/demo.toml",
            overrides=[
                f"job.output='{output}'",
                f"samples.synthetic_ttbar.paths=['{synthetic}/synthetic_signal_*.root']",
                f"samples.synthetic_qcd.paths=['{synthetic}/synthetic_background_*.root']",
                f"mlflow.registered_model='{NAME}'",
                "mlflow.experiment='registry-test'",
                "mlflow.promote='if_better'",
                *extra,
            ],
        )

    good_config = config("model.gbt.maxIter=10")
    good = run_train_job(spark, good_config)
    worse = run_train_job(spark, config("model.gbt.maxIter=1", "model.gbt.maxDepth=1"))
    test = spark.read.parquet(f"{output}/features").filter("split = 'test'")
    return good_config, good, worse, test


def test_mlflow_alias_and_promote_keys_are_parsed_and_checked():
    demo = REPO / "conf/jobs/demo.toml"
    assert load_config(demo).mlflow.promote == "if_better"
    assert load_config(demo).mlflow.alias == "champion"
    config = load_config(demo, overrides=["mlflow.promote='never'", "mlflow.alias='prod'"])
    assert (config.mlflow.promote, config.mlflow.alias) == ("never", "prod")
    with pytest.raises(ConfigError, match=r"'mlflow.promote' must be one of \['always', "):
        load_config(demo, overrides=["mlflow.promote='sometimes'"])
    with pytest.raises(ConfigError, match=r"'mlflow.alias'.*got 'v3'"):
        load_config(demo, overrides=["mlflow.alias='v3'"])
    with pytest.raises(ConfigError, match=r"unknown key 'mlflow.promot'"):
        load_config(demo, overrides=["mlflow.promot='always'"])


def _model_dir(uri: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))


@pytest.mark.slow
def test_every_run_registers_a_two_flavor_model(jobs, registry):
    config, good, worse, _ = jobs
    assert (good.model_version, worse.model_version) == ("1", "2")
    root = _model_dir(f"models:/{NAME}/1")
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())
    assert set(mlmodel["flavors"]) == {"spark", "python_function"}
    assert mlmodel["flavors"]["python_function"]["loader_module"] == LOADER_MODULE
    assert mlmodel["flavors"]["spark"]["model_data"] == "sparkml"
    inputs = {c["name"]: c for c in json.loads(mlmodel["signature"]["inputs"])}
    for feature in good.features:
        assert inputs[feature]["type"] == "double"
    assert inputs["Jet_pt"]["type"] == "array"
    assert inputs["MET_pt"]["type"] == "double"
    example = json.loads((root / "input_example.json").read_text())
    assert example["columns"] == good.features
    spec = json.loads((root / "sparkhep/feature_spec.json").read_text())
    assert FeatureSpec.from_dict(spec) == config.features
    model = load_model(f"models:/{NAME}/1")
    assert model.feature_names == good.features
    assert model.engine == "gbt"


@pytest.mark.slow
def test_worse_model_does_not_take_the_alias(jobs, registry):
    _, good, worse, _ = jobs
    assert good.alias == "champion"
    assert worse.alias == ""
    assert worse.test_auc < good.test_auc
    assert "≤" in worse.promotion and "numpy scores on this run's test split" in worse.promotion
    assert str(alias_holder(NAME, "champion").version) == "1"


@pytest.mark.slow
def test_holder_is_scored_on_this_runs_test_rows(jobs, registry):
    """The AUC that stopped version 2 is version 1's own test AUC, recomputed by numpy."""
    _, good, worse, _ = jobs
    holder_auc = float(worse.promotion.split("≤ ")[1].split()[0])
    assert holder_auc == pytest.approx(good.test_auc, abs=1e-5)


@pytest.mark.slow
def test_better_model_takes_the_alias(jobs, registry):
    config, good, _, test = jobs
    promote(NAME, "2", alias="challenger-test")
    decision = promote_if_better(
        NAME, "1", alias="challenger-test", new_auc=good.test_auc, spec=config.features, test=test
    )
    assert decision.promoted
    assert decision.holder_version == "2"
    assert decision.holder_auc < good.test_auc
    assert str(alias_holder(NAME, "challenger-test").version) == "1"


@pytest.mark.slow
def test_another_feature_spec_compares_the_logged_metrics(jobs, registry):
    config, good, worse, test = jobs
    other = dataclasses.replace(config.features, event=config.features.event[:-1])
    promote(NAME, "1", alias="spec-test")
    decision = promote_if_better(
        NAME, "2", alias="spec-test", new_auc=worse.test_auc, spec=other, test=test
    )
    assert not decision.promoted
    assert decision.compared_on == "its logged test_auc: another feature spec"
    assert decision.holder_auc == pytest.approx(good.test_auc, rel=1e-12)
    assert str(alias_holder(NAME, "spec-test").version) == "1"


@pytest.mark.slow
def test_promote_command(jobs, registry, capsys):
    assert main(["promote", NAME, "2", "--alias", "staging"]) == 0
    assert str(alias_holder(NAME, "staging").version) == "2"
    assert "models:/registry-test@staging → version 2" in capsys.readouterr().out
    assert main(["promote", NAME, "9", "--alias", "staging"]) == 2
    assert "has no version '9' (versions: [1, 2])" in capsys.readouterr().err
    assert str(alias_holder(NAME, "staging").version) == "2"


PYFUNC_SCRIPT = """
import json, sys
sys.modules["pyspark"] = None  # mlflow tries `import pyspark`: make sure nothing needs it
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
root = mlflow.artifacts.download_artifacts(sys.argv[1])
raw = json.load(open(f"{root}/raw_input.json"))["dataframe_records"]
example = json.load(open(f"{root}/input_example.json"))
features = pd.DataFrame(example["data"], columns=example["columns"])
print(json.dumps({"raw": list(map(float, model.predict(pd.DataFrame(raw)))),
                  "features": list(map(float, model.predict(features))),
                  "records": raw, "columns": example["columns"], "rows": example["data"]}))
"""


@pytest.mark.slow
def test_pyfunc_from_the_registry_scores_both_forms_as_spark_does(jobs, registry, spark, tmp_path):
    from pyspark.ml.functions import vector_to_array

    uri, _ = registry
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(PATH=str(tmp_path), MLFLOW_TRACKING_URI=uri)
    result = subprocess.run(
        [sys.executable, "-c", PYFUNC_SCRIPT, f"models:/{NAME}@champion"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    spark_model = mlflow.spark.load_model(f"models:/{NAME}/1")
    rows = spark.createDataFrame(pd.DataFrame(answer["rows"], columns=answer["columns"]))
    expected = (
        spark_model.transform(rows)
        .select(vector_to_array("probability")[1].alias("p"))
        .toPandas()["p"]
        .to_numpy()
    )
    np.testing.assert_allclose(answer["features"], expected, rtol=0, atol=1e-9)
    numpy_model = load_model(f"models:/{NAME}/1")
    raw_scores = numpy_model.predict_frame(pd.DataFrame(answer["records"]))
    np.testing.assert_array_equal(answer["raw"], raw_scores)
    assert len(answer["raw"]) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_needs_no_java(jobs, registry, tmp_path):
    uri, _ = registry
    port = _free_port()
    venv_bin = Path(sys.executable).parent
    tools = tmp_path / "bin"  # mlflow runs `bash -c "exec uvicorn …"`; no java beside it
    tools.mkdir()
    (tools / "bash").symlink_to("/bin/bash")
    assert not (venv_bin / "java").exists()
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(PATH=f"{venv_bin}:{tools}", MLFLOW_TRACKING_URI=uri)
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            str(venv_bin / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not answer in 120 s"
            time.sleep(1)
        model = load_model(f"models:/{NAME}@champion")
        root = _model_dir(f"models:/{NAME}@champion")
        records = json.loads((root / "raw_input.json").read_text())["dataframe_records"]
        features = model.features_from_raw(pa_table(records))
        expected = model.predict_matrix(features)
        split = {"columns": model.feature_names, "data": features.tolist()}
        for body in ({"dataframe_split": split}, {"dataframe_records": records}):
            request = urllib.request.Request(
                f"{base}/invocations",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                predictions = json.loads(answer.read())["predictions"]
            np.testing.assert_allclose(predictions, expected, rtol=0, atol=1e-12)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        log.close()


def pa_table(records: list[dict]):
    import pyarrow as pa

    return pa.Table.from_pylist(records)
