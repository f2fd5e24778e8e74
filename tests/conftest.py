"""Shared fixtures: one SparkSession for the whole run, and the shared ROOT data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or ``$SPARKHEP_SHARED_DATA``), if present."""
    override = os.environ.get("SPARKHEP_SHARED_DATA")
    candidate = Path(override) if override else REPO.parent / "shared" / "data"
    return candidate.resolve() if (candidate / "pythia").is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real ROOT files; tests that use it skip with a reason where they are absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data (real ROOT files) is not beside this checkout")
    return path


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The one SparkSession of the test run: local[2], few shuffle partitions, no UI."""
    from sparkhep.session import build_session

    session = build_session(
        app_name="sparkhep-tests",
        overrides={
            "spark.master": "local[2]",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
        },
    )
    yield session
    session.stop()
