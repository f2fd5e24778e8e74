"""The models a server holds: where they come from, loading, and reloading when an alias moves.

A model is named in URLs by its registered name (``models:/tthad@champion`` → ``tthad``), or,
for ``runs:/`` URIs and local paths, by a name given as ``NAME=URI`` (default: the last path
component). An alias is resolved to a version once per load; :meth:`ModelStore.poll` resolves it
again and, when it moved, downloads and loads the new version completely before swapping it in
with one reference assignment, so a request holds either the old model or the new one, never a
half-loaded one. Nothing here imports pyspark.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkhep.serve.inputs import Scorer

log = logging.getLogger(__name__)

Loader = Callable[[str], Any]
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
INTEGER_TYPES = frozenset({"integer", "long"})


class ModelLoadError(RuntimeError):
    """A model of the command line could not be resolved, downloaded or loaded."""


@dataclass(frozen=True)
class ModelSource:
    """One model URI of the command line, parsed.

    Attributes:
        uri: the URI as given (without a ``NAME=`` prefix).
        name: the name in URLs.
        registered_name: the registry name for ``models:/`` URIs.
        alias: the alias of ``models:/<name>@<alias>`` (polled for moves).
        version: the fixed version of ``models:/<name>/<version>``.
    """

    uri: str
    name: str
    registered_name: str | None = None
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSource:
        """``models:/name@alias``, ``models:/name/3``, ``runs:/<id>/path`` or a local path,
        optionally prefixed by ``NAME=``.

        Raises:
            ValueError: for a ``models:/`` URI without an alias or version, or an empty name.
        """
        given, sep, rest = text.partition("=")
        name = None
        if sep and _NAME.match(given) and rest:
            name, text = given, rest
        if text.startswith("models:/"):
            match = _MODELS_URI.match(text)
            if not match:
                raise ValueError(
                    f"model URI {text!r}: expected models:/<name>@<alias> or "
                    "models:/<name>/<version>"
                )
            return cls(
                uri=text,
                name=name or match["name"],
                registered_name=match["name"],
                alias=match["alias"],
                version=match["version"],
            )
        stem = text.rstrip("/").rsplit("/", 1)[-1]
        if not (name or stem):
            raise ValueError(f"model URI {text!r}: give a name as NAME={text}")
        return cls(uri=text, name=name or stem)

    @property
    def is_local(self) -> bool:
        """A directory on this machine (a path or ``file://``), loaded in place."""
        return self.uri.startswith("file://") or ":/" not in self.uri


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score; replaced as a whole on reload, never mutated."""

    source: ModelSource
    scorer: Scorer
    version: str | None
    path: str
    column_types: dict[str, str]
    loaded_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def feature_names(self) -> list[str]:
        return list(self.scorer.feature_names)

    @property
    def integer_columns(self) -> frozenset[str]:
        """Signature columns that take integral values only."""
        return frozenset(n for n, t in self.column_types.items() if t in INTEGER_TYPES)


class ModelStore:
    """The loaded models by name, an alias poller, and the downloaded artifacts.

    Args:
        sources: the models to serve (URIs as on the command line, or parsed sources).
        loader: local model directory → scorer (``sparkhep.scoring.load_scoring_model``).
        tracking_uri: the MLflow tracking and registry URI for ``models:/`` and ``runs:/``.
        poll_interval: seconds between alias checks; ``0`` disables polling.
    """

    def __init__(
        self,
        sources: Sequence[str | ModelSource],
        *,
        loader: Loader,
        tracking_uri: str,
        poll_interval: float = 30.0,
    ) -> None:
        parsed = [s if isinstance(s, ModelSource) else ModelSource.parse(s) for s in sources]
        if not parsed:
            raise ValueError("no model to serve: give at least one model URI")
        names = [s.name for s in parsed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"model names {duplicates!r} are given more than once; name them as NAME=URI"
            )
        self.sources = parsed
        self.loader = loader
        self.tracking_uri = tracking_uri
        self.poll_interval = poll_interval
        self.reloads: dict[str, int] = dict.fromkeys(names, 0)
        self.reload_failures: dict[str, int] = dict.fromkeys(names, 0)
        self._models: dict[str, LoadedModel] = {}
        self._workdir = tempfile.mkdtemp(prefix="sparkhep-serve-")
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._client: Any = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def get(self, name: str) -> LoadedModel:
        """The model serving under ``name``.

        Raises:
            KeyError: no such model (the message lists the served names).
        """
        try:
            return self._models[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}; this server serves {self.names!r}") from None

    def models(self) -> list[LoadedModel]:
        """The loaded models, in command-line order."""
        return [self._models[name] for name in self.names if name in self._models]

    def load_all(self) -> None:
        """Load every model (at start).

        Raises:
            ModelLoadError: naming the model that could not be resolved, fetched or loaded.
        """
        for source in self.sources:
            try:
                loaded = self._load(source, self._resolve(source))
            except Exception as err:
                raise ModelLoadError(
                    f"model {source.name!r} ({source.uri}): {type(err).__name__}: {err}"
                ) from err
            self._swap(loaded)

    def poll(self) -> list[str]:
        """Reload the models whose alias moved; failures are logged, the old model stays.

        Returns:
            The names of the models reloaded.
        """
        reloaded = []
        for source in self.sources:
            if source.alias is None:
                continue
            try:
                version = self._resolve(source)
                current = self._models.get(source.name)
                if current is not None and current.version == version:
                    continue
                loaded = self._load(source, version)
            except Exception:
                self.reload_failures[source.name] += 1
                log.exception("reloading %s (%s) failed; the loaded model stays", *_id(source))
                continue
            self.reloads[source.name] += 1  # before the swap: whoever sees it sees the count
            self._swap(loaded)
            reloaded.append(source.name)
        return reloaded

    def start_polling(self) -> None:
        """Poll in a daemon thread every ``poll_interval`` seconds until :meth:`close`."""
        if self.poll_interval <= 0 or self._poller is not None:
            return
        if not any(s.alias for s in self.sources):
            return
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll_loop, name="sparkhep-alias-poller", daemon=True
        )
        self._poller.start()

    def stop_polling(self) -> None:
        """Stop the poller thread (waits for a poll in progress)."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=60.0)
            self._poller = None

    def close(self) -> None:
        """Stop the poller and remove the downloaded artifacts."""
        self.stop_polling()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.poll()

    def _mlflow_client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def _resolve(self, source: ModelSource) -> str | None:
        if source.alias is not None:
            client = self._mlflow_client()
            found = client.get_model_version_by_alias(source.registered_name, source.alias)
            return str(found.version)
        return source.version

    def _load(self, source: ModelSource, version: str | None) -> LoadedModel:
        started = time.perf_counter()
        if source.is_local:
            path = source.uri.removeprefix("file://")
            if not Path(path).is_dir():
                raise FileNotFoundError(f"model {source.name!r}: no model directory at {path!r}")
        else:
            import mlflow.artifacts

            uri = source.uri
            if source.registered_name:
                # mlflow's models:/ repository asks the *global* registry URI, so resolve the
                # version's storage location with this store's own client.
                client = self._mlflow_client()
                uri = client.get_model_version_download_uri(source.registered_name, version)
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=uri,
                dst_path=tempfile.mkdtemp(dir=self._workdir),
                tracking_uri=self.tracking_uri,
                registry_uri=self.tracking_uri,
            )
        loaded = LoadedModel(
            source=source,
            scorer=self.loader(path),
            version=version,
            path=path,
            column_types=signature_types(path),
        )
        log.info(
            "loaded %s (%s%s) in %.2f s: %d features",
            source.name,
            source.uri,
            f" → version {version}" if source.alias else "",
            time.perf_counter() - started,
            len(loaded.feature_names),
        )
        return loaded

    def _swap(self, loaded: LoadedModel) -> None:
        old = self._models.get(loaded.name)
        self._models[loaded.name] = loaded
        if old is not None and old.path != loaded.path and old.path.startswith(self._workdir):
            # The scorer holds everything in memory; its files are no longer needed.
            relative = Path(old.path).relative_to(self._workdir)
            shutil.rmtree(Path(self._workdir) / relative.parts[0], ignore_errors=True)


def _id(source: ModelSource) -> tuple[str, str]:
    return source.name, source.uri


def signature_types(path: str) -> dict[str, str]:
    """Column name → MLflow type (``double``, ``long``, …) of the signature in ``MLmodel``.

    Read with yaml and json rather than ``mlflow.models``: importing mlflow's type module
    imports pyspark wherever it is installed, and a local model needs nothing else of mlflow.
    """
    import yaml

    mlmodel = Path(path) / "MLmodel"
    if not mlmodel.is_file():
        return {}
    signature = (yaml.safe_load(mlmodel.read_text()) or {}).get("signature") or {}
    inputs = json.loads(signature.get("inputs") or "[]")
    return {
        spec["name"]: str(spec.get("type"))
        for spec in inputs
        if isinstance(spec, dict) and spec.get("name")
    }
