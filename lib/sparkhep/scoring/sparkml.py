"""Read a saved Spark ``PipelineModel`` directory and score it with numpy: no pyspark, no JVM.

Spark ML persists each stage as ``metadata/part-*`` (one JSON line: class, uid, params) and, for
fitted models, ``data/`` in Parquet; a pipeline lists its stages under ``stages/<i>_<uid>``.
These files are read with pyarrow and evaluated here with numpy (the GBT through Treelite when it
is installed, see :mod:`sparkhep.scoring.trees`), so a model trained on a cluster can be served
by a process that has neither pyspark nor Java. Only the stages sparkhep's trainers produce
(:mod:`sparkhep.train.pipeline`) are implemented; any other class fails at load time, naming the
stage, rather than scoring wrongly.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sparkhep.scoring.trees import GbtEnsemble, build_tree_evaluator

log = logging.getLogger(__name__)

PIPELINE_CLASSES = ("org.apache.spark.ml.PipelineModel", "pyspark.ml.pipeline.PipelineModel")
ASSEMBLER = "org.apache.spark.ml.feature.VectorAssembler"
SCALER = "org.apache.spark.ml.feature.StandardScalerModel"
GBT = "org.apache.spark.ml.classification.GBTClassificationModel"
MLP = "org.apache.spark.ml.classification.MultilayerPerceptronClassificationModel"
XGBOOST = "xgboost.spark.estimator.SparkXGBClassifierModel"
ENGINES = {GBT: "gbt", MLP: "mlp", XGBOOST: "xgboost"}

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class StageMetadata:
    """One stage's ``metadata`` JSON: where it is, its class, uid and (set or default) params."""

    path: Path
    class_name: str
    uid: str
    params: dict[str, Any]
    extra: dict[str, Any]

    def param(self, name: str) -> Any:
        """The parameter as Spark would use it: set value, else default (KeyError if neither)."""
        if name in self.params:
            return self.params[name]
        return self.extra.get("defaultParamMap", {})[name]

    def describe(self) -> str:
        """``<class> (uid <uid>) in <path>``, for messages."""
        return f"{self.class_name} (uid {self.uid}) in {self.path}"


@dataclass(frozen=True)
class VectorStage:
    """A stage of the numpy pipeline: reads one vector column, writes another."""

    metadata: StageMetadata
    input_col: str
    output_col: str
    transform: Transform


def read_metadata(path: str | Path) -> StageMetadata:
    """The ``metadata/part-*`` JSON of a saved Spark ML stage or pipeline.

    Args:
        path: the stage's directory.

    Returns:
        Its class, uid, params and the rest of the JSON (defaults, numFeatures, …).

    Raises:
        FileNotFoundError: when ``path`` holds no Spark ML metadata.
    """
    directory = Path(path)
    parts = sorted((directory / "metadata").glob("part-*"))
    if not parts:
        raise FileNotFoundError(
            f"{directory}: not a saved Spark ML model (expected {directory / 'metadata'}/part-*)"
        )
    text = parts[0].read_text().strip().splitlines()[0]
    data = json.loads(text)
    return StageMetadata(
        path=directory,
        class_name=data["class"],
        uid=data["uid"],
        params=dict(data.get("paramMap", {})),
        extra=data,
    )


def read_data(path: Path) -> pa.Table:
    """A stage's Parquet ``data`` (or other) directory, Spark's ``_SUCCESS``/``.crc`` ignored."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: missing; a saved Spark ML model keeps its data there")
    return pq.read_table(path)


def vector_values(vector: dict[str, Any]) -> np.ndarray:
    """A Spark ``VectorUDT`` struct (type 1 dense, type 0 sparse) as a dense float64 array."""
    values = np.asarray(vector["values"], dtype=np.float64)
    if vector["type"] == 1:
        return values
    dense = np.zeros(int(vector["size"]), dtype=np.float64)
    dense[np.asarray(vector["indices"], dtype=np.int64)] = values
    return dense


class NumpyPipelineScorer:
    """A saved Spark ``PipelineModel`` evaluated with numpy: input columns → P(signal).

    Attributes:
        input_columns: the columns the first ``VectorAssembler`` reads, in vector order.
        engine: ``"gbt"``, ``"mlp"`` or ``"xgboost"`` (the class of the final stage).
    """

    def __init__(
        self, path: Path, input_columns: list[str], stages: list[VectorStage], final: VectorStage
    ) -> None:
        self.path = path
        self.input_columns = input_columns
        self.stages = stages
        self.final = final
        self.engine = ENGINES[final.metadata.class_name]

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """P(signal) for each row of ``x`` (columns in ``input_columns`` order), float64."""
        vectors = {self.stages[0].input_col: np.asarray(x, dtype=np.float64)}
        for stage in [*self.stages, self.final]:
            if stage.input_col not in vectors:
                raise ValueError(
                    f"{stage.metadata.describe()} reads column {stage.input_col!r}, which no "
                    f"earlier stage writes (written: {sorted(vectors)!r})"
                )
            vectors[stage.output_col] = stage.transform(vectors[stage.input_col])
        return vectors[self.final.output_col]


def load_pipeline(path: str | Path) -> NumpyPipelineScorer:
    """Load a saved Spark ``PipelineModel`` directory for numpy scoring.

    Args:
        path: the directory ``PipelineModel.save`` wrote (``sparkml/`` in an MLflow model).

    Returns:
        The scorer.

    Raises:
        FileNotFoundError: ``path`` is not a saved Spark ML model.
        ValueError: naming a stage whose class this scorer does not implement, or a pipeline
            that does not start with a ``VectorAssembler`` and end with a classifier.
    """
    root = Path(path)
    metadata = read_metadata(root)
    if metadata.class_name not in PIPELINE_CLASSES:
        raise ValueError(f"{root}: expected a saved PipelineModel, found {metadata.class_name!r}")
    uids = list(metadata.param("stageUids"))
    stages = [_load_stage(read_metadata(_stage_dir(root, i, uid))) for i, uid in enumerate(uids)]
    if not stages or stages[0].metadata.class_name != ASSEMBLER:
        raise ValueError(f"{root}: the first stage must be a VectorAssembler, got {uids!r}")
    if stages[-1].metadata.class_name not in ENGINES:
        raise ValueError(
            f"{root}: the last stage must be one of {sorted(ENGINES)!r}, got "
            f"{stages[-1].metadata.describe()}"
        )
    assembler = stages[0].metadata
    columns = list(assembler.param("inputCols"))
    log.debug("loaded %s: %s", root, [s.metadata.class_name for s in stages])
    return NumpyPipelineScorer(root, columns, stages[:-1], stages[-1])


def _stage_dir(root: Path, index: int, uid: str) -> Path:
    directory = root / "stages" / f"{index}_{uid}"
    if not directory.is_dir():
        raise FileNotFoundError(f"{root}: stage {index} ({uid}) is missing: expected {directory}")
    return directory


def _load_stage(metadata: StageMetadata) -> VectorStage:
    loaders: dict[str, Callable[[StageMetadata], VectorStage]] = {
        ASSEMBLER: _assembler,
        SCALER: _scaler,
        GBT: _gbt,
        MLP: _mlp,
        XGBOOST: _xgboost,
    }
    if metadata.class_name not in loaders:
        raise ValueError(
            f"pipeline stage {metadata.describe()} is not supported by sparkhep's numpy scorer "
            f"(supported: {sorted(loaders)!r})"
        )
    return loaders[metadata.class_name](metadata)


def _assembler(metadata: StageMetadata) -> VectorStage:
    width = len(metadata.param("inputCols"))

    def assemble(x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"expected a matrix of {width} feature columns, got shape {x.shape}")
        return x

    return VectorStage(metadata, "__input__", metadata.param("outputCol"), assemble)


def _scaler(metadata: StageMetadata) -> VectorStage:
    row = read_data(metadata.path / "data").to_pylist()[0]
    mean, std = vector_values(row["mean"]), vector_values(row["std"])
    with_mean, with_std = bool(metadata.param("withMean")), bool(metadata.param("withStd"))
    # Spark multiplies by 1/std (0 where std is 0), it does not divide: same rounding here.
    scale = np.divide(1.0, std, out=np.zeros_like(std), where=std != 0)

    def standardise(x: np.ndarray) -> np.ndarray:
        out = x - mean if with_mean else x
        return out * scale if with_std else out

    return VectorStage(
        metadata, metadata.param("inputCol"), metadata.param("outputCol"), standardise
    )


def _gbt(metadata: StageMetadata) -> VectorStage:
    ensemble = read_gbt(metadata)
    evaluate = build_tree_evaluator(ensemble)
    return VectorStage(metadata, metadata.param("featuresCol"), "probability", evaluate)


def read_gbt(metadata: StageMetadata) -> GbtEnsemble:
    """The trees (node arrays) and tree weights of a saved ``GBTClassificationModel``."""
    if metadata.param("lossType") != "logistic":
        raise ValueError(f"{metadata.describe()}: lossType {metadata.param('lossType')!r}")
    nodes = read_data(metadata.path / "data")
    weights_table = read_data(metadata.path / "treesMetadata")
    weights = dict(
        zip(
            weights_table.column("_1").to_pylist(),
            weights_table.column("_3").to_pylist(),
            strict=True,
        )
    )
    data = nodes.column("nodeData").combine_chunks()
    split = data.field("split")
    columns = {
        "tree": nodes.column("treeID").to_numpy(),
        "id": data.field("id").to_numpy(),
        "prediction": data.field("prediction").to_numpy(),
        "left": data.field("leftChild").to_numpy(),
        "right": data.field("rightChild").to_numpy(),
        "feature": split.field("featureIndex").to_numpy(),
        "categories": split.field("numCategories").to_numpy(),
        "threshold": _first_values(split.field("leftCategoriesOrThreshold")),
    }
    internal = columns["left"] >= 0
    if np.any(columns["categories"][internal] >= 0):
        raise ValueError(
            f"{metadata.describe()}: categorical splits are not supported (sparkhep's features "
            "are continuous)"
        )
    order = np.lexsort((columns["id"], columns["tree"]))
    columns = {k: v[order] for k, v in columns.items()}
    trees = sorted(weights)
    if sorted(set(columns["tree"].tolist())) != trees:
        raise ValueError(f"{metadata.describe()}: node data and tree weights list other trees")
    return GbtEnsemble.from_nodes(
        columns,
        weights=np.array([weights[t] for t in trees], dtype=np.float64),
        num_features=int(metadata.extra["numFeatures"]),
        source=metadata.describe(),
    )


def _first_values(lists: pa.ListArray) -> np.ndarray:
    """First element of each list (the threshold of a continuous split; NaN for leaves)."""
    lengths = lists.value_lengths().to_numpy(zero_copy_only=False)
    flat = lists.flatten().to_numpy()
    offsets = lists.offsets.to_numpy()[:-1]
    out = np.full(len(lists), np.nan)
    has = lengths > 0
    out[has] = flat[offsets[has] - lists.offsets.to_numpy()[0]]
    return out


def _mlp(metadata: StageMetadata) -> VectorStage:
    layers = [int(n) for n in metadata.param("layers")]
    weights = vector_values(read_data(metadata.path / "data").to_pylist()[0]["weights"])
    expected = sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(layers))
    if weights.size != expected:
        raise ValueError(
            f"{metadata.describe()}: {weights.size} weights, expected {expected} for {layers}"
        )
    affine = []
    offset = 0
    for n_in, n_out in itertools.pairwise(layers):
        # W is out x in, column-major: the flat block read row-major as (in, out) is Wᵀ.
        matrix = weights[offset : offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        affine.append((matrix, weights[offset : offset + n_out]))
        offset += n_out
    if layers[-1] != 2:
        raise ValueError(f"{metadata.describe()}: {layers[-1]} output classes, expected 2")

    def forward(x: np.ndarray) -> np.ndarray:
        out = x
        for matrix, bias in affine[:-1]:
            out = 1.0 / (1.0 + np.exp(-(out @ matrix + bias)))
        matrix, bias = affine[-1]
        logits = out @ matrix + bias
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp[:, 1] / exp.sum(axis=1)

    return VectorStage(metadata, metadata.param("featuresCol"), "probability", forward)


def _xgboost(metadata: StageMetadata) -> VectorStage:
    try:
        import xgboost
    except ImportError as err:
        raise ImportError(
            f"{metadata.describe()} needs xgboost: pip install xgboost-cpu (sparkhep[serve])"
        ) from err
    parts = sorted((metadata.path / "model").glob("part-*"))
    if not parts:
        raise FileNotFoundError(f"{metadata.describe()}: no booster in {metadata.path / 'model'}")
    text = "".join(line for part in parts for line in part.read_text().splitlines())
    booster = xgboost.Booster()
    booster.load_model(bytearray(text, "utf-8"))
    best = booster.attr("best_iteration")
    # as XGBClassifier.predict_proba: the best iteration when trained with early stopping
    iterations = (0, int(best) + 1) if best is not None else (0, 0)
    missing = metadata.param("missing")
    missing = math.nan if missing is None else float(missing)

    def predict(x: np.ndarray) -> np.ndarray:
        out = booster.inplace_predict(x, iteration_range=iterations, missing=missing)
        out = np.asarray(out, dtype=np.float64)
        if out.ndim != 1:
            raise ValueError(f"{metadata.describe()}: booster output {out.shape}, expected binary")
        return out

    return VectorStage(metadata, metadata.param("featuresCol"), "probability", predict)
