"""Which MLflow tracking store a job talks to.

The embedded default is a SQLite file, ``sqlite:///mlruns.db``, in the working directory (the
model registry needs a database store); ``MLFLOW_TRACKING_URI`` — e.g. a team's
``mlflow server`` — always wins. Artifacts go where MLflow puts them by default.
"""

from __future__ import annotations

import os

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the embedded default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure_tracking() -> str:
    """Point the ``mlflow`` client (tracking and registry) at :func:`tracking_uri`.

    Returns:
        The URI in use.
    """
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
