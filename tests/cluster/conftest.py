"""Fixtures of the ``cluster`` tests: the packed environment, a standalone cluster per module and
an ``mlflow server`` per module, all stopped by finalizers also when a test fails."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import LOOPBACK, SUBMIT, MlflowServer, StandaloneCluster, free_port, start_cluster


@pytest.fixture(scope="session")
def packed_environment() -> Path:
    """The packed environment, built once (cached under build/envs by the submit script)."""
    result = subprocess.run(
        [sys.executable, str(SUBMIT), "pack"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, packed_environment) -> Iterator[StandaloneCluster]:
    """A master and two one-core workers on 127.0.0.1 for one test module."""
    cluster = start_cluster(tmp_path_factory.mktemp("standalone"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` for one test module."""
    port = free_port()
    server = MlflowServer(f"http://{LOOPBACK}:{port}", port, tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()
