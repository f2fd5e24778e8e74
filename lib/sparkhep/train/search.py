"""Hyper-parameter search: every point of the config's grid or list, scored on validation.

Points are fitted in parallel (a thread pool; Spark schedules their jobs side by side), each on
the training rows and scored by the weighted ROC AUC on the validation rows; each is recorded as
an MLflow child run of the job's run (params, ``validation_auc``, fit time). The best point is
then refit by the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    """One search point: its parameters, validation AUC, fit time and child run."""

    params: Mapping[str, Any]
    validation_auc: float
    seconds: float
    run_id: str


def run_search(
    points: Sequence[Mapping[str, Any]],
    *,
    fit: Callable[[Mapping[str, Any]], PipelineModel],
    validation: DataFrame,
    parent_run_id: str,
    parallelism: int,
) -> list[Trial]:
    """Fit and score every point; log one MLflow child run per point.

    Args:
        points: parameter overrides, one dict per trial.
        fit: fits the pipeline with a point's parameters.
        validation: the validation rows (label, physics weight, features).
        parent_run_id: the job's MLflow run; each trial is its child.
        parallelism: how many trials run at once.

    Returns:
        The trials in the order of ``points``.
    """
    import mlflow

    from sparkhep.evaluate.roc import weighted_roc_auc
    from sparkhep.evaluate.scores import collect_scores

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id

    def trial(index: int, params: Mapping[str, Any]) -> Trial:
        run = client.create_run(
            experiment_id,
            run_name=f"trial-{index}",
            tags={"mlflow.parentRunId": parent_run_id, "sparkhep.search_trial": str(index)},
        )
        run_id = run.info.run_id
        try:
            for name, value in params.items():
                client.log_param(run_id, name, value)
            start = time.perf_counter()
            model = fit(params)
            seconds = time.perf_counter() - start
            auc = weighted_roc_auc(*collect_scores(model.transform(validation)))
            client.log_metric(run_id, "validation_auc", auc)
            client.log_metric(run_id, "fit_time_s", seconds)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        log.info(
            "search trial %d %s: validation AUC %.4f (%.1f s)", index, dict(params), auc, seconds
        )
        return Trial(params=dict(params), validation_auc=auc, seconds=seconds, run_id=run_id)

    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        futures = [pool.submit(trial, i, p) for i, p in enumerate(points)]
        return [f.result() for f in futures]


def best_trial(trials: Sequence[Trial]) -> Trial:
    """The trial with the highest validation AUC (the first one on ties)."""
    return max(trials, key=lambda t: t.validation_auc)
