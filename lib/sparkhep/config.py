"""Load and validate a job config (TOML) into frozen dataclasses.

The config is parsed once, here; nothing deeper reads raw dicts. A missing or misspelt key is an
error naming the key and the file (with the closest valid names). ``${VAR}`` in any string is
expanded from the environment, relative paths resolve against the working directory, and
``--set key.path=value`` overrides from the command line are applied before validation.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkhep.features.expression import ExpressionError
from sparkhep.features.spec import (
    COLLECTION_KINDS,
    EVENT_KINDS,
    CollectionFeatures,
    EventFeature,
    FeatureSpec,
)

LABELS = {"signal": 1, "background": 0}
ENGINES = ("gbt", "mlp", "xgboost")
NEGATIVE_WEIGHT_POLICIES = ("keep", "clip", "abs")
_REQUIRED = object()
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """A job config that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SampleConfig:
    """One physics sample: its ROOT files and whether it is signal or background."""

    name: str
    paths: tuple[str, ...]
    label: int
    tree: str = "Events"
    xsec: float | None = None
    sum_genweight: float | None = None


@dataclass(frozen=True)
class WeightsConfig:
    """How event weights are built for training and evaluation.

    Attributes:
        lumi: integrated luminosity (in the inverse unit of the samples' ``xsec``).
        balance_classes: rescale each class to a mean training weight of 1.
        negative: policy for negative weights: ``keep`` (xgboost only), ``clip`` to 0, ``abs``;
            ``None`` refuses them on the MLlib engines.
    """

    lumi: float = 1.0
    balance_classes: bool = True
    negative: str | None = None


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of events (by event-id hash) in each split; they sum to 1."""

    train: float = 0.7
    validation: float = 0.0
    test: float = 0.3
    kfold: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Which estimator to train and its parameters.

    ``params`` are those of the chosen engine: its own table (``[model.gbt]``, ``[model.mlp]``,
    ``[model.xgboost]``) updated by ``[model.params]``.
    """

    engine: str = "gbt"
    params: Mapping[str, Any] = field(default_factory=dict)
    hidden_layers: tuple[int, ...] = (64, 32)


@dataclass(frozen=True)
class SearchConfig:
    """Hyper-parameter search: the points tried (each a dict of ``model.params`` overrides).

    Empty ``points`` means no search. Points come from ``[search.grid]`` (every combination) and
    ``search.points`` (a list); each is scored by the weighted AUC on the validation split.
    """

    points: tuple[Mapping[str, Any], ...] = ()
    parallelism: int = 2


PROMOTE_POLICIES = ("always", "if_better", "never")


@dataclass(frozen=True)
class MlflowConfig:
    """Where runs go, which registered model receives the new version, and its alias.

    ``promote`` says when the train job moves ``alias`` to the new version: ``always``,
    ``if_better`` (its weighted test AUC beats the current holder's on this run's test split;
    a model with no holder yet takes the alias) or ``never`` (``sparkhep promote`` by hand).
    """

    experiment: str
    registered_model: str
    alias: str = "champion"
    promote: str = "if_better"


@dataclass(frozen=True)
class JobConfig:
    """A whole train job, as parsed from one TOML file."""

    source: Path
    name: str
    output: str
    samples: tuple[SampleConfig, ...]
    features: FeatureSpec
    split: SplitConfig
    model: ModelConfig
    mlflow: MlflowConfig
    raw: Mapping[str, Any]
    weights: WeightsConfig = WeightsConfig()
    search: SearchConfig = SearchConfig()

    def sample(self, name: str) -> SampleConfig:
        """The sample called ``name``."""
        for sample in self.samples:
            if sample.name == name:
                return sample
        raise KeyError(f"no sample {name!r} in {self.source}; samples are {self.sample_names()!r}")

    def sample_names(self) -> list[str]:
        """Sample names in config order."""
        return [s.name for s in self.samples]


def load_config(path: str | Path, *, overrides: Sequence[str] = ()) -> JobConfig:
    """Read, override, expand and validate a job config.

    Args:
        path: the TOML file.
        overrides: ``dotted.key=value`` strings; the value is read as a TOML value
            (``6``, ``0.1``, ``"gbt"``, ``[1, 2]``) and as a plain string when it is not one.

    Returns:
        The validated config.

    Raises:
        ConfigError: naming the file and key of the first problem found.
    """
    source = Path(path)
    try:
        raw = tomllib.loads(source.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"config file {str(source)!r} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    for override in overrides:
        _apply_override(raw, override, source)
    raw = _expand(raw, source, "")
    return _parse(raw, source)


def _apply_override(raw: dict[str, Any], override: str, source: Path) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected 'dotted.key=value'")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {part!r} in {source} is not a table")
        node = child
    node[parts[-1]] = value


def _expand(value: Any, source: Path, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, source, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, source, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"{source}: key {where!r} uses ${{{name}}}, which is not set in the environment"
                )
            return os.environ[name]

        return _VARIABLE.sub(substitute, value)
    return value


class _Table:
    """Reads one TOML table, tracking which keys were used so unknown ones can be named."""

    def __init__(self, data: Any, source: Path, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {where!r} must be a table, got {data!r}")
        self.data, self.source, self.where, self.used = data, source, where, set[str]()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is _REQUIRED:
                close = difflib.get_close_matches(name, list(self.data), n=1)
                hint = f" (found {self.key(close[0])!r}: misspelt?)" if close else ""
                raise ConfigError(f"{self.source}: missing required key {self.key(name)!r}{hint}")
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(
                f"{self.source}: key {self.key(name)!r} must be {expected}, got {value!r}"
            )
        return value

    def table(self, name: str, default: Any = _REQUIRED) -> _Table:
        value = self.get(name, dict, {} if default is not _REQUIRED else _REQUIRED)
        return _Table(value, self.source, self.key(name))

    def choice(self, name: str, choices: Sequence[str], default: Any = _REQUIRED) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise ConfigError(
                f"{self.source}: key {self.key(name)!r} must be one of {list(choices)!r}, "
                f"got {value!r}"
            )
        return value

    def finish(self) -> None:
        for name in self.data:
            if name not in self.used:
                close = difflib.get_close_matches(name, sorted(self.used), n=3)
                hint = (
                    f"; did you mean {close!r}?"
                    if close
                    else f"; valid keys: {sorted(self.used)!r}"
                )
                raise ConfigError(f"{self.source}: unknown key {self.key(name)!r}{hint}")


def _parse(raw: dict[str, Any], source: Path) -> JobConfig:
    top = _Table(raw, source, "")
    job = top.table("job")
    name = job.get("name", str)
    output = job.get("output", str, f"output/{name}")
    job.finish()

    samples_table = top.table("samples")
    samples = tuple(
        _parse_sample(sample_name, samples_table.get(sample_name, dict), source)
        for sample_name in list(samples_table.data)
    )
    labels = {s.label for s in samples}
    if labels != {0, 1}:
        raise ConfigError(
            f"{source}: [samples] needs at least one 'signal' and one 'background' sample, "
            f"got labels {sorted(labels)!r}"
        )

    features = _parse_features(top.table("features"), source)
    split = _parse_split(top.table("split", {}), source)

    model_config = _parse_model(top.table("model"), source)
    weights = _parse_weights(top.table("weights", {}), source, samples)
    if model_config.engine != "xgboost" and weights.negative == "keep":
        raise ConfigError(
            f"{source}: weights.negative = 'keep' works only with model.engine = 'xgboost' "
            f"(MLlib {model_config.engine!r} rejects negative weights); use 'clip' or 'abs'"
        )
    search = _parse_search(top.table("search", {}), source)
    if search.points and split.validation <= 0:
        raise ConfigError(
            f"{source}: [search] scores each point on the validation split; "
            "set split.validation > 0"
        )

    tracking = top.table("mlflow", {})
    mlflow_config = MlflowConfig(
        experiment=tracking.get("experiment", str, name),
        registered_model=tracking.get("registered_model", str, name),
        alias=tracking.get("alias", str, "champion"),
        promote=tracking.choice("promote", PROMOTE_POLICIES, "if_better"),
    )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", mlflow_config.alias) or re.fullmatch(
        r"[vV]\d+", mlflow_config.alias
    ):
        raise ConfigError(
            f"{source}: key 'mlflow.alias' must be a name of letters, digits, '_' and '-' "
            f"(not 'v<number>', which MLflow reserves), got {mlflow_config.alias!r}"
        )
    tracking.finish()
    top.finish()
    return JobConfig(
        source=source,
        name=name,
        output=_resolve(output),
        samples=samples,
        features=features,
        split=split,
        model=model_config,
        mlflow=mlflow_config,
        raw=raw,
        weights=weights,
        search=search,
    )


def _resolve(path: str) -> str:
    """Relative local paths resolve against the working directory; URLs stay as they are."""
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def _parse_sample(name: str, data: dict[str, Any], source: Path) -> SampleConfig:
    table = _Table(data, source, f"samples.{name}")
    paths = table.get("paths", (list, str))
    paths = [paths] if isinstance(paths, str) else paths
    if not paths or not all(isinstance(p, str) for p in paths):
        raise ConfigError(
            f"{source}: key 'samples.{name}.paths' must be a non-empty list of paths or globs"
        )
    label = table.choice("label", list(LABELS))
    tree = table.get("tree", str, "Events")
    xsec = table.get("xsec", float, None)
    sum_genweight = table.get("sum_genweight", float, None)
    table.finish()
    for key, value in (("xsec", xsec), ("sum_genweight", sum_genweight)):
        if value is not None and value <= 0:
            raise ConfigError(f"{source}: key 'samples.{name}.{key}' must be > 0, got {value!r}")
    return SampleConfig(
        name=name,
        paths=tuple(_resolve(p) for p in paths),
        label=LABELS[label],
        tree=tree,
        xsec=xsec,
        sum_genweight=sum_genweight,
    )


def _parse_features(table: _Table, source: Path) -> FeatureSpec:
    weight = table.get("weight", str, "") or None
    fill_value = table.get("fill_value", float, 0.0)
    event_id = tuple(table.get("event_id", list, ["run", "luminosityBlock", "event"]))
    allow_truth = table.get("allow_truth", bool, False)
    collections = []
    for index, entry in enumerate(table.get("collections", list, [])):
        block = _Table(entry, source, f"features.collections[{index}]")
        fields = block.get("fields", list)
        collections.append(
            CollectionFeatures(
                prefix=block.get("prefix", str),
                n=block.get("n", int),
                order_by=block.get("order_by", str, "pt"),
                fields=tuple(fields),
                fill_value=block.get("fill_value", float, fill_value),
                selection=block.get("selection", str, None),
                mask=block.get("mask", bool, True),
            )
        )
        block.finish()
        if collections[-1].n < 1 or not fields:
            raise ConfigError(
                f"{source}: features.collections[{index}] needs n ≥ 1 and at least one field"
            )
    event = []
    event_table = table.table("event", {})
    for feature_name in list(event_table.data):
        event.append(
            _parse_event_feature(
                feature_name, event_table.get(feature_name, dict), source, fill_value
            )
        )
    event_table.finish()
    table.finish()
    try:
        spec = FeatureSpec(
            collections=tuple(collections),
            event=tuple(event),
            weight=weight,
            event_id=event_id,
            allow_truth=allow_truth,
        )
    except ValueError as err:
        raise ConfigError(f"{source}: [features]: {err}") from err
    if not spec.feature_names():
        raise ConfigError(f"{source}: [features] declares no features")
    return spec


def _parse_event_feature(
    name: str, data: dict[str, Any], source: Path, fill_value: float
) -> EventFeature:
    entry = _Table(data, source, f"features.event.{name}")
    kind = entry.choice("kind", EVENT_KINDS)
    tagged = kind in ("nbtag", "dr_bb")
    feature = EventFeature(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        collection=entry.get("collection", str) if kind in COLLECTION_KINDS else None,
        field=entry.get("field", str, "btagDeepB") if tagged else "btagDeepB",
        working_point=entry.get("working_point", float) if tagged else None,
        branch=entry.get("branch", str, name) if kind == "branch" else None,
        expression=entry.get("expression", str) if kind == "expr" else None,
        selection=entry.get("selection", str, None) if kind in COLLECTION_KINDS else None,
        max_objects=entry.get("max_objects", int, 6) if kind in ("top_mass", "w_mass") else 6,
        fill_value=entry.get("fill_value", float, fill_value),
    )
    entry.finish()
    try:
        feature.branches()
    except ExpressionError as err:
        raise ConfigError(f"{source}: features.event.{name}: {err}") from err
    return feature


def _parse_model(table: _Table, source: Path) -> ModelConfig:
    engine = table.choice("engine", ENGINES, "gbt")
    per_engine = {name: table.get(name, dict, {}) for name in ENGINES}
    hidden = table.get("hidden_layers", list, [64, 32])
    if not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ConfigError(
            f"{source}: key 'model.hidden_layers' must be a list of positive integers, "
            f"got {hidden!r}"
        )
    config = ModelConfig(
        engine=engine,
        params={**per_engine[engine], **table.get("params", dict, {})},
        hidden_layers=tuple(hidden),
    )
    table.finish()
    return config


def _parse_weights(table: _Table, source: Path, samples: Sequence[SampleConfig]) -> WeightsConfig:
    weights = WeightsConfig(
        lumi=table.get("lumi", float, 1.0),
        balance_classes=table.get("balance_classes", bool, True),
        negative=(
            table.choice("negative", NEGATIVE_WEIGHT_POLICIES) if "negative" in table.data else None
        ),
    )
    table.finish()
    if weights.lumi <= 0:
        raise ConfigError(f"{source}: key 'weights.lumi' must be > 0, got {weights.lumi!r}")
    with_xsec = [s.name for s in samples if s.xsec is not None]
    if with_xsec and len(with_xsec) != len(samples):
        without = [s.name for s in samples if s.xsec is None]
        raise ConfigError(
            f"{source}: samples {with_xsec!r} have an xsec but {without!r} do not; "
            "give every sample a cross-section or none"
        )
    return weights


def _parse_search(table: _Table, source: Path) -> SearchConfig:
    grid = table.table("grid", {})
    axes = {}
    for name in list(grid.data):
        values = grid.get(name, list)
        if not values:
            raise ConfigError(f"{source}: key 'search.grid.{name}' must be a non-empty list")
        axes[name] = values
    grid.finish()
    points = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    if not axes:
        points = []
    for index, point in enumerate(table.get("points", list, [])):
        if not isinstance(point, dict) or not point:
            raise ConfigError(
                f"{source}: search.points[{index}] must be a table of parameters, got {point!r}"
            )
        points.append(point)
    search = SearchConfig(
        points=tuple(points),
        parallelism=table.get("parallelism", int, 2),
    )
    table.finish()
    if search.parallelism < 1:
        raise ConfigError(f"{source}: key 'search.parallelism' must be ≥ 1")
    return search


def _parse_split(table: _Table, source: Path) -> SplitConfig:
    split = SplitConfig(
        train=table.get("train", float, 0.7),
        validation=table.get("validation", float, 0.0),
        test=table.get("test", float, 0.3),
        kfold=table.get("kfold", int, 0),
    )
    table.finish()
    if split.kfold == 1 or split.kfold < 0:
        raise ConfigError(
            f"{source}: key 'split.kfold' must be 0 (no k-fold) or ≥ 2, got {split.kfold}"
        )
    parts = (split.train, split.validation, split.test)
    if (
        any(p < 0 for p in parts)
        or abs(sum(parts) - 1.0) > 1e-9
        or split.train == 0
        or split.test == 0
    ):
        raise ConfigError(
            f"{source}: [split] fractions must be ≥ 0, sum to 1, with train and test > 0; "
            f"got train={split.train}, validation={split.validation}, test={split.test}"
        )
    return split
