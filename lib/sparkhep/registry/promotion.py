"""Aliases of registered versions: ``sparkhep promote`` and the train job's ``if_better`` rule.

A server follows ``models:/<name>@<alias>``; moving the alias is how a new version goes live.
With ``promote = "if_better"`` the train job moves it only when the new version's weighted test
AUC beats the current holder's *on this run's test rows* (the same hash split): the holder's
pyfunc — sparkhep's numpy scorer — scores them, so both numbers come from the same events. When
the holder was trained with another feature spec, this run's table may lack its features; then
the logged ``test_auc`` metrics are compared instead, and the log says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from pyspark.sql import DataFrame

    from sparkhep.features.spec import FeatureSpec

log = logging.getLogger(__name__)

TEST_METRIC = "test_auc"


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the new version took the alias, and the figures compared."""

    promoted: bool
    reason: str
    new_auc: float
    holder_version: str | None = None
    holder_auc: float | None = None
    compared_on: str = ""


def promote(name: str, version: str | int, *, alias: str) -> ModelVersion:
    """Point ``models:/<name>@<alias>`` at ``version``.

    Args:
        name: the registered model.
        version: its version to promote.
        alias: e.g. ``champion``.

    Returns:
        The promoted version.

    Raises:
        ValueError: ``name`` or ``version`` is not registered (listing the versions there are).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as err:
        try:
            versions = sorted(
                int(v.version) for v in client.search_model_versions(f"name = '{name}'")
            )
        except MlflowException:
            versions = []
        raise ValueError(
            f"registered model {name!r} has no version {str(version)!r}"
            + (f" (versions: {versions!r})" if versions else " (no versions registered)")
        ) from err
    client.set_registered_model_alias(name, alias, found.version)
    log.info("models:/%s@%s → version %s", name, alias, found.version)
    return found


def alias_holder(name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or ``None`` when it points nowhere yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote_if_better(
    name: str,
    version: str,
    *,
    alias: str,
    new_auc: float,
    spec: FeatureSpec,
    test: DataFrame | None,
) -> PromotionDecision:
    """Move ``alias`` to ``version`` when its test AUC beats the holder's (or there is none).

    Args:
        name: the registered model.
        version: the new version.
        alias: the alias to move.
        new_auc: the new version's weighted test AUC on ``test``.
        spec: the feature spec of the new version (and of ``test``'s feature columns).
        test: this run's test rows: ``label``, ``weight`` and the feature columns (``None``
            when they are gone: the logged metrics are compared).

    Returns:
        What was decided and why.
    """
    holder = alias_holder(name, alias)
    if holder is None:
        promote(name, version, alias=alias)
        return PromotionDecision(True, f"{alias!r} pointed nowhere", new_auc)
    if str(holder.version) == str(version):
        return PromotionDecision(True, "already the holder", new_auc, str(holder.version))
    holder_auc, compared_on = _holder_auc(name, holder, spec=spec, test=test)
    better = new_auc > holder_auc
    decision = PromotionDecision(
        promoted=better,
        reason=(
            f"test AUC {new_auc:.5f} {'>' if better else '≤'} {holder_auc:.5f} of version "
            f"{holder.version} ({compared_on})"
        ),
        new_auc=new_auc,
        holder_version=str(holder.version),
        holder_auc=holder_auc,
        compared_on=compared_on,
    )
    if better:
        promote(name, version, alias=alias)
    log.info(
        "%s version %s %s %r: %s",
        name,
        version,
        "takes" if better else "does not take",
        alias,
        decision.reason,
    )
    return decision


def _holder_auc(
    name: str, holder: ModelVersion, *, spec: FeatureSpec, test: DataFrame | None
) -> tuple[float, str]:
    """The holder's weighted test AUC: scored on ``test`` when the specs agree, else logged."""
    import mlflow
    import numpy as np

    from sparkhep.evaluate.metrics import physics_metrics
    from sparkhep.registry.flavor import load_model

    model = load_model(f"models:/{name}/{holder.version}")
    same_spec = model.spec.to_dict() == spec.to_dict()
    if same_spec and test is not None:
        table = test.select(*model.feature_names, "label", "weight").toArrow()
        matrix = np.column_stack(
            [table.column(n).to_numpy().astype(np.float64) for n in model.feature_names]
        )
        scores = model.predict_matrix(matrix)
        labels = table.column("label").to_numpy()
        weights = table.column("weight").to_numpy()
        auc = physics_metrics(scores, labels, weights, n_bootstrap=0)[TEST_METRIC].value
        return auc, "its numpy scores on this run's test split"
    why = "another feature spec" if not same_spec else "this run's test split is not at hand"
    log.warning(
        "version %s of %s: %s; comparing the logged %s metrics instead of scoring it on this "
        "run's test split",
        holder.version,
        name,
        why,
        TEST_METRIC,
    )
    run = mlflow.MlflowClient().get_run(holder.run_id)
    if TEST_METRIC not in run.data.metrics:
        raise ValueError(
            f"version {holder.version} of {name!r} (run {holder.run_id}) has no logged "
            f"{TEST_METRIC!r} metric to compare with"
        )
    return run.data.metrics[TEST_METRIC], f"its logged {TEST_METRIC}: {why}"
