"""What a fitted pipeline tells about itself: feature importances and loss per iteration."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame


def feature_importances(model: PipelineModel) -> dict[str, float] | None:
    """Feature name → importance for tree models (MLlib GBT: split gain; xgboost: total gain).

    Args:
        model: a fitted pipeline whose first stage is the feature ``VectorAssembler``.

    Returns:
        The importances, or ``None`` for a model without them (the MLP).
    """
    names = model.stages[0].getInputCols()
    last = model.stages[-1]
    if hasattr(last, "featureImportances"):
        vector = last.featureImportances.toArray()
        return {name: float(vector[i]) for i, name in enumerate(names)}
    if hasattr(last, "get_feature_importances"):
        scores = last.get_feature_importances(importance_type="total_gain")
        by_index = {int(key[1:]): value for key, value in scores.items() if key[1:].isdigit()}
        if by_index:
            return {name: float(by_index.get(i, 0.0)) for i, name in enumerate(names)}
        return {name: float(scores.get(name, 0.0)) for name in names}
    return None


def loss_curves(
    model: PipelineModel, *, train: DataFrame, validation: DataFrame | None
) -> tuple[dict[str, list[float]], str]:
    """Loss per iteration where the model provides it.

    MLlib GBT: the log-loss after each tree on the training and validation rows
    (``evaluateEachIteration``); MLP: the optimiser's objective per iteration. xgboost's Spark
    model keeps no history, so it has none.

    Args:
        model: the fitted pipeline.
        train: training rows (with the feature columns).
        validation: validation rows, if any.

    Returns:
        (curve name → values, label of the y axis); empty when not available.
    """
    last = model.stages[-1]
    if hasattr(last, "evaluateEachIteration"):
        assembler = model.stages[0]
        curves = {"train": list(last.evaluateEachIteration(assembler.transform(train)))}
        if validation is not None:
            curves["validation"] = list(last.evaluateEachIteration(assembler.transform(validation)))
        return curves, "Log-loss"
    if hasattr(last, "summary") and hasattr(last, "hasSummary") and last.hasSummary:
        return {"train": list(last.summary().objectiveHistory)}, "Objective (cross-entropy)"
    return {}, ""
