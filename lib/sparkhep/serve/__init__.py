"""``sparkhep serve``: score events over HTTP without Spark or a JVM.

MLflow's scoring protocol and Open Inference Protocol V2 on FastAPI + uvicorn, models loaded
from the MLflow registry (reloaded when their alias moves), Prometheus metrics. Importing this
package imports neither pyspark nor the models' loader.
"""

from __future__ import annotations

from sparkhep.serve.app import create_app, serve
from sparkhep.serve.inputs import InputError
from sparkhep.serve.models import LoadedModel, ModelLoadError, ModelSource, ModelStore

__all__ = [
    "InputError",
    "LoadedModel",
    "ModelLoadError",
    "ModelSource",
    "ModelStore",
    "create_app",
    "serve",
]
