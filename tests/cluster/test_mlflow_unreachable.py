"""``sparkhep train`` against a real ``mlflow server`` that is not there: at the start (fail fast,
nothing done) and at the end (fail clearly, keep the fitted model, ``--register-only`` it later)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from services import LOOPBACK, MlflowServer, demo_job_args, free_port, run_job, wait_until
from sparkhep.generate import write_sample

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

SPARKHEP = str(Path(sys.executable).parent / "sparkhep")
EVENTS_PER_KIND = 2000
MODEL = "mlflow-outage-test"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("synthetic-small")
    write_sample(directory, kind="signal", n_events=EVENTS_PER_KIND, n_files=1, seed=41)
    write_sample(directory, kind="background", n_events=EVENTS_PER_KIND, n_files=1, seed=42)
    return directory


@pytest.fixture
def server(tmp_path) -> MlflowServer:
    port = free_port()
    server = MlflowServer(f"http://{LOOPBACK}:{port}", port, tmp_path / "mlflow-server")
    yield server
    server.stop()


def train_command(sample: Path, output: Path, *extra: str) -> list[str]:
    """``sparkhep train`` in local mode (the MLflow behaviour is the same on every master)."""
    return [
        SPARKHEP,
        "train",
        *demo_job_args(sample, output, max_iter=5, model=MODEL),
        "--spark-conf",
        "spark.master=local[2]",
        "--spark-conf",
        "spark.driver.memory=1g",
        *extra,
    ]


def test_train_fails_fast_when_the_tracking_server_is_down(sample, tmp_path):
    nobody = f"http://{LOOPBACK}:{free_port()}"
    start = time.monotonic()
    result = run_job(
        train_command(sample, tmp_path / "out"),
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": nobody},
        timeout=120,
    )
    assert result.returncode == 2
    assert f"the MLflow tracking server {nobody} is unreachable" in result.stderr
    assert "nothing was run" in result.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "out").exists()


def test_server_lost_before_register_keeps_model_and_register_only_registers_it(
    sample, server, tmp_path
):
    server.start()
    output = tmp_path / "out"
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri}
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        job = subprocess.Popen(
            train_command(sample, output),
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # The server goes away once the model is fitted, before the register step.
        wait_until(
            lambda: "step train done" in log.read_text(errors="replace") or job.poll() is not None,
            timeout=400,
            what="the train step to finish",
        )
        server.stop()
        returncode = job.wait(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert returncode == 2, text[-3000:]
    model_dir = output / "model"
    assert f"the MLflow tracking server {server.uri} is unreachable" in text
    assert f"--register-only {model_dir}" in text
    assert (model_dir / "pipeline" / "metadata").is_dir()
    assert any((model_dir / "report").glob("part-*"))

    # The server is back (same store, same port): register what was kept, without training.
    server.start()
    client = mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    assert client.search_model_versions(f"name='{MODEL}'") == []
    result = run_job(
        train_command(sample, output, "--register-only", str(model_dir)),
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step train" not in result.stderr
    assert "step ingest" not in result.stderr
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert [v.version for v in versions] == ["1"]
    run = client.get_run(versions[0].run_id)
    assert run.data.metrics["events_synthetic_ttbar"] == EVENTS_PER_KIND
    assert "time_train_s" in run.data.metrics
    assert f"models:/{MODEL}/1" in result.stdout
