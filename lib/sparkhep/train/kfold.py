"""K-fold training by the event hash, and scoring each event with the model that did not see it.

``fold = pmod(xxhash64(run, luminosityBlock, event), k)``: the same deterministic hash as the
train/validation/test split, so folds are reproducible across runs, clusters and partitionings.
Model ``f`` is trained on the events whose fold is not ``f``; an event of fold ``f`` is scored
only by model ``f`` — a model never scores an event it was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.ml import Model
    from pyspark.sql import Column, DataFrame

log = logging.getLogger(__name__)

FOLD_COLUMN = "fold"


def fold_of(event_id: Sequence[str], k: int) -> Column:
    """The event's fold in 0..k-1: ``pmod(xxhash64(<event id columns>), k)``."""
    from pyspark.sql import functions as F

    if k < 2:
        raise ValueError(f"k-fold needs k ≥ 2, got {k}")
    return F.pmod(F.xxhash64(*event_id), F.lit(k))


def train_folds(
    frame: DataFrame,
    fit: Callable[[DataFrame], Model],
    *,
    k: int,
    event_id: Sequence[str],
) -> list[Model]:
    """Fit ``k`` models, model ``f`` on the rows of ``frame`` whose fold is not ``f``.

    Args:
        frame: the training rows (all folds).
        fit: fits one model on the rows it is given.
        k: number of folds.
        event_id: the columns that identify an event.

    Returns:
        The ``k`` fitted models, indexed by the fold each must score.
    """
    models = []
    for fold in range(k):
        log.info("k-fold: fitting the model for fold %d of %d", fold, k)
        models.append(fit(frame.filter(fold_of(event_id, k) != fold)))
    return models


def score_out_of_fold(
    events: DataFrame, models: Sequence[Model], *, event_id: Sequence[str]
) -> DataFrame:
    """Transform each event with the model of its fold (the one that was not trained on it).

    Args:
        events: events with the ``event_id`` columns and the models' input columns.
        models: one fitted model per fold, as returned by :func:`train_folds`.
        event_id: the columns that identify an event.

    Returns:
        The union of every fold's transformed events, with the ``fold`` column added.
    """
    k = len(models)
    tagged = events.withColumn(FOLD_COLUMN, fold_of(event_id, k))
    parts = [
        model.transform(tagged.filter(tagged[FOLD_COLUMN] == f)) for f, model in enumerate(models)
    ]
    scored = parts[0]
    for part in parts[1:]:
        scored = scored.unionByName(part)
    return scored
