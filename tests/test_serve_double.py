"""A linear scorer with the interface of ``sparkhep.scoring.ScoringModel``, for server tests.

Its raw-event path is the real feature code (``compute_features``) on a small spec, so the
server's jagged-branch handling is exercised for real; only the classifier is a stand-in:
P = 1 / (1 + exp(-(w · x + b))), NaN in → NaN out (the real scorer refuses NaN instead).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sparkhep.features.compute import compute_features
from sparkhep.features.spec import CollectionFeatures, EventFeature, FeatureSpec

SPEC = FeatureSpec(
    collections=(CollectionFeatures(prefix="Jet", n=2, fields=("pt",), mask=False),),
    event=(
        EventFeature(name="nJet", kind="count", collection="Jet"),
        EventFeature(name="MET_pt", kind="branch", branch="MET_pt"),
    ),
)
FEATURES = ["Jet1_pt", "Jet2_pt", "nJet", "MET_pt"]
WEIGHTS = [0.01, 0.02, -0.5, 0.03]
BIAS = -1.0


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class LinearScorer:
    """``ScoringModel`` stand-in: ``feature_names``, ``raw_branches``, ``spec``, ``engine``."""

    engine = "linear"

    def __init__(self, weights: list[float], bias: float) -> None:
        self.spec = SPEC
        self.feature_names = SPEC.feature_names()
        self.raw_branches = SPEC.branches()
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = bias

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected shape (N, {len(self.feature_names)}), got {x.shape}")
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))

    def features_from_raw(self, table: pa.Table) -> np.ndarray:
        features = compute_features(table, self.spec)
        return np.column_stack([features[n] for n in self.feature_names])


def write_linear_model(path: Path, *, weights: list[float] = WEIGHTS, bias: float = BIAS) -> Path:
    """A model directory: ``linear.json`` plus an ``MLmodel`` whose signature has nJet: long."""
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    path.mkdir(parents=True, exist_ok=True)
    (path / "linear.json").write_text(json.dumps({"weights": weights, "bias": bias}))
    types = {"nJet": "long"}
    signature = ModelSignature(
        inputs=Schema([ColSpec(types.get(n, "double"), n) for n in FEATURES]),
    )
    Model(signature=signature).save(str(path / "MLmodel"))
    return path


def load_linear_model(path: str) -> LinearScorer:
    """The loader the server is given in tests (in place of ``load_scoring_model``)."""
    data = json.loads((Path(path) / "linear.json").read_text())
    return LinearScorer(data["weights"], data["bias"])


def test_double_matches_hand_computed_values(tmp_path: Path) -> None:
    model = load_linear_model(str(write_linear_model(tmp_path / "m")))
    assert model.feature_names == FEATURES
    assert model.raw_branches == ["Jet_pt", "MET_pt"]
    # 0.5 + 0.6 - 1.0 + 0.6 - 1 = -0.3
    predicted = model.predict_matrix(np.array([[50.0, 30.0, 2.0, 20.0]]))
    assert predicted.tolist() == pytest.approx([sigmoid(-0.3)], rel=1e-12)
    table = pa.table({"Jet_pt": pa.array([[30.0, 50.0, 10.0], []]), "MET_pt": [20.0, 20.0]})
    assert model.features_from_raw(table).tolist() == [[50, 30, 3, 20], [0, 0, 0, 20]]
