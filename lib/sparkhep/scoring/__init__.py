"""JVM-free scoring of sparkhep models: Spark's saved pipeline files evaluated with numpy.

Importing this package never imports pyspark (directly or through another module); xgboost and
treelite are imported only when a model needs them.
"""

from __future__ import annotations

from sparkhep.scoring.model import ScoringModel, load_scoring_model
from sparkhep.scoring.sparkml import NumpyPipelineScorer, load_pipeline

__all__ = ["NumpyPipelineScorer", "ScoringModel", "load_pipeline", "load_scoring_model"]
