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


class TrackingServerUnreachable(RuntimeError):
    """The MLflow tracking server of ``MLFLOW_TRACKING_URI`` does not answer."""


def require_tracking_server(uri: str, *, timeout: float = 5.0, when: str = "") -> None:
    """Fail at once with a clear message when an HTTP tracking server does not answer.

    MLflow's own client retries an unreachable server with backoff for minutes before it gives
    up; one ``GET /health`` with a short timeout says the same in seconds. Database and file
    stores (``sqlite:``, ``file:``, paths) are local and not checked.

    Args:
        uri: the tracking URI in use (``tracking_uri()``).
        timeout: seconds to wait for the answer.
        when: what the job was about to do, for the message.

    Raises:
        TrackingServerUnreachable: the server refused, timed out or answered with an error.
    """
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    health = f"{uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as answer:
            if answer.status == 200:
                return
            problem = f"HTTP {answer.status}"
    except (urllib.error.URLError, OSError) as err:
        problem = str(getattr(err, "reason", err))
    raise TrackingServerUnreachable(
        f"the MLflow tracking server {uri} is unreachable ({health}: {problem})"
        + (f" {when}" if when else "")
        + "; start it, or point MLFLOW_TRACKING_URI at a reachable server"
    )
