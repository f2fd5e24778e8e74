"""Train benchmark: each engine against single-node xgboost on the same feature table.

Builds the feature table once per dataset (the real Pythia samples, and ``--events`` SYNTHETIC
events per class from ``sparkhep generate``), then times, on the same train/validation/test rows
and the same cores:

- single-node ``xgboost.XGBClassifier(tree_method="hist")`` (the baseline, data already in memory),
- the ``xgboost`` engine (``xgboost.spark``),
- the MLlib GBT with sparkhep's settings (early stopping on the validation rows),
- ``GBTClassifier`` with default settings run for 100 iterations (the MLlib baseline), on the
  same rows in the train job's layout (``spread_over_cores``: one partition per core) and, when
  the feature table is read in another number of partitions, once more on the table as read,
- the MLP.

The sparkhep engines run with the parameters the shipped ``conf/jobs/tthad.toml`` gives them
(its ``[model.<engine>]`` table over the engine's defaults), i.e. what ``sparkhep train`` fits;
on the generated samples the GBT step is ``LARGE_SAMPLE_GBT`` (printed in the engine's name).
An untimed two-iteration GBT fit warms the JVM up first (the first tree fit in a JVM pays for
JIT compilation). Each fit is also repeated with one iteration to separate the fixed overhead
from the per-iteration time. Prints a Markdown table of wall time, ratios and weighted test AUC
(with its Poisson-bootstrap error), and the load average around each dataset: on a shared
machine wall times are only comparable within one run.

    .venv/bin/python benchmarks/train.py --events 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _table(spark, config, sample_dir: Path):
    from sparkhep.convert import convert_samples, sample_output
    from sparkhep.train.job import feature_table
    from sparkhep.train.weights import sample_scales

    convert_samples(spark, config, branches=config.features.branches_to_read())
    paths = {s.name: sample_output(config, s.name) for s in config.samples}
    out = str(sample_dir / "features")
    feature_table(spark, config, paths, sample_scales(spark, config, paths)).write.parquet(out)
    return spark.read.parquet(out)


def _config(out: Path, signal: str, background: str, *, engine: str = "gbt"):
    from sparkhep.config import load_config

    return load_config(
        REPO / "conf/jobs/tthad.toml",
        overrides=[
            f"job.output='{out}'",
            f"samples.ttbar.paths=['{signal}']",
            f"samples.qcd.paths=['{background}']",
            f"model.engine='{engine}'",
        ],
    )


SHOWN_GBT_PARAMS = ("maxDepth", "stepSize")
LARGE_SAMPLE_GBT = {"stepSize": 0.5}
"""The GBT step for the generated samples (10^5 events and more): ``tthad.toml``'s 0.2 is for
the 27 510 Pythia training events, where a larger step makes MLlib's early stopping (no
patience) end after a handful of trees; with 10^6 events, 0.5 reaches the test AUC of MLlib's
defaults run for 100 iterations in about 35 trees."""


def bench_session(app_name: str):
    """The benchmarks' Spark session: ``local[2]``, no UI, 3 GB of driver heap."""
    from sparkhep.session import build_session

    return build_session(
        app_name=app_name,
        overrides={"spark.master": "local[2]", "spark.sql.shuffle.partitions": "4",
                   "spark.ui.enabled": "false", "spark.driver.memory": "3g"},
    )  # fmt: skip


def synthetic_config(work: Path, events: int):
    """``tthad.toml`` over ``events`` SYNTHETIC events per class, written under ``work``."""
    from sparkhep.generate import write_sample

    generated = work / "generated"
    write_sample(generated, kind="signal", n_events=events, n_files=4, seed=1)
    write_sample(generated, kind="background", n_events=events, n_files=4, seed=2)
    return _config(
        work / "synthetic",
        f"{generated}/synthetic_signal_*.root",
        f"{generated}/synthetic_background_*.root",
    )


def _shipped_models() -> dict:
    """``ModelConfig`` per engine as ``conf/jobs/tthad.toml`` sets it (paths do not matter)."""
    return {e: _config(Path("unused"), "s", "b", engine=e).model for e in ("gbt", "mlp", "xgboost")}


def _arrays(table, names, split):
    frame = table.filter(f"split = '{split}'").select(*names, "label", "weight", "train_weight")
    arrow = frame.toArrow()
    x = np.column_stack([arrow.column(n).to_numpy() for n in names])
    return (
        x,
        arrow.column("label").to_numpy(),
        arrow.column("weight").to_numpy(),
        arrow.column("train_weight").to_numpy(),
    )


def _timed(fit):
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


class FitRows(NamedTuple):
    """A feature table made ready for fitting, as every benchmark here fits it."""

    names: list[str]
    """The features (the table's columns but bookkeeping, constant ones dropped)."""
    weighted: Any
    """Every row with its ``train_weight``."""
    as_read: Any
    """The train+validation rows with ``is_validation``, in the partitions the table is read as."""
    frame: Any
    """``as_read`` in the train job's layout (or ``partitions``), cached."""
    test: Any
    """The test rows, cached."""


def fit_rows(table, *, partitions: int = 0) -> FitRows:
    """The rows to fit on and to test with; the fit rows one partition per core, as the train job
    has them (``spread_over_cores`` says why), unless ``partitions`` is given."""
    from pyspark.sql import functions as F
    from sparkhep.config import WeightsConfig
    from sparkhep.train.job import constant_features
    from sparkhep.train.pipeline import VALIDATION, spread_over_cores
    from sparkhep.train.weights import training_weights

    bookkeeping = ("run", "luminosityBlock", "event", "sample", "label", "weight", "split")
    declared = [c for c in table.columns if c not in bookkeeping]
    dropped = constant_features(table.filter("split = 'train'"), declared)
    weighted = training_weights(table, WeightsConfig(), engine="gbt")
    as_read = weighted.filter("split != 'test'").withColumn(
        VALIDATION, F.col("split") == "validation"
    )
    laid_out = as_read.repartition(partitions) if partitions else spread_over_cores(as_read)
    frame = laid_out.cache()
    frame.count()
    test = table.filter("split = 'test'").cache()
    test.count()
    names = [n for n in declared if n not in dropped]
    return FitRows(names, weighted, as_read, frame, test)


def default_gbt(rows, names, iterations: int):
    """``GBTClassifier`` with MLlib's defaults for ``iterations`` trees on the training rows."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F
    from sparkhep.train.pipeline import VALIDATION

    stages = [
        VectorAssembler(inputCols=list(names), outputCol="features"),
        GBTClassifier(maxIter=iterations, weightCol="train_weight"),
    ]
    return Pipeline(stages=stages).fit(rows.filter(~F.col(VALIDATION)))


def _bench_dataset(spark, name, table, rows, models):
    from sparkhep.evaluate.metrics import physics_metrics
    from sparkhep.evaluate.scores import collect_scores
    from sparkhep.train.pipeline import XGBOOST_DEFAULTS, fit_pipeline

    names, weighted, as_read, frame, test = fit_rows(table)
    n_fit = frame.count()

    def auc(model):
        return physics_metrics(*collect_scores(model.transform(test)), n_bootstrap=50)["test_auc"]

    import xgboost

    x_train, y_train, _, w_train = _arrays(weighted, names, "train")
    x_val, y_val, _, w_val = _arrays(weighted, names, "validation")
    x_test, y_test, w_test, _ = _arrays(weighted, names, "test")

    def single(n_estimators):
        settings = {**XGBOOST_DEFAULTS, "n_estimators": n_estimators}
        if n_estimators == 1:
            settings.pop("early_stopping_rounds")
        model = xgboost.XGBClassifier(**settings, n_jobs=2)
        model.fit(x_train, y_train, sample_weight=w_train, eval_set=[(x_val, y_val)],
                  sample_weight_eval_set=[w_val], verbose=False)  # fmt: skip
        return model

    # untimed: the first MLlib tree fit in a JVM pays for JIT compilation, whichever engine it is
    _warm_up(frame, names)
    results = []

    def record(engine, full, one, iterations, score):
        overhead = one
        per_iteration = (full - one) / max(iterations - 1, 1)
        results.append((engine, full, overhead, per_iteration, iterations, score))
        print(
            f"  {name} {engine}: {full:.1f} s (1 it: {one:.1f} s), {iterations} it, "
            f"AUC {score.value:.4f} ± {score.error:.4f}, load {_load()}",
            flush=True,
        )

    model, t_full = _timed(lambda: single(XGBOOST_DEFAULTS["n_estimators"]))
    _, t_one = _timed(lambda: single(1))
    score = physics_metrics(model.predict_proba(x_test)[:, 1], y_test, w_test, n_bootstrap=50)[
        "test_auc"
    ]
    record("single-node xgboost (hist)", t_full, t_one, model.best_iteration + 1, score)

    xgb = models["xgboost"]
    model, t_full = _timed(lambda: fit_pipeline(frame, names, xgb))
    _, t_one = _timed(
        lambda: fit_pipeline(frame, names, xgb, params={"n_estimators": 1}, early_stopping=False)
    )
    booster = model.stages[-1].get_booster()
    record(
        "xgboost engine (xgboost.spark)", t_full, t_one, booster.num_boosted_rounds(), auc(model)
    )

    gbt = models["gbt"]
    model, t_full = _timed(lambda: fit_pipeline(frame, names, gbt))
    _, t_one = _timed(lambda: fit_pipeline(frame, names, gbt, params={"maxIter": 1}))
    settings = ", ".join(f"{k} {v}" for k, v in gbt.params.items() if k in SHOWN_GBT_PARAMS)
    engine = f"MLlib GBT, sparkhep ({settings})"
    record(engine, t_full, t_one, model.stages[-1].getNumTrees, auc(model))

    model, t_full = _timed(lambda: default_gbt(frame, names, 100))
    _, t_one = _timed(lambda: default_gbt(frame, names, 1))
    record("MLlib GBT, defaults, 100 it", t_full, t_one, 100, auc(model))
    read_partitions = as_read.rdd.getNumPartitions()
    if read_partitions != frame.rdd.getNumPartitions():
        read_rows = as_read.cache()
        read_rows.count()
        model, t_full = _timed(lambda: default_gbt(read_rows, names, 100))
        _, t_one = _timed(lambda: default_gbt(read_rows, names, 1))
        engine = f"MLlib GBT, defaults, 100 it, table as read ({read_partitions} partitions)"
        record(engine, t_full, t_one, 100, auc(model))
        read_rows.unpersist()

    mlp = models["mlp"]
    model, t_full = _timed(lambda: fit_pipeline(frame, names, mlp))
    _, t_one = _timed(lambda: fit_pipeline(frame, names, mlp, params={"maxIter": 1}))
    iterations = len(model.stages[-1].summary().objectiveHistory)
    layers = ", ".join(str(h) for h in mlp.hidden_layers)
    record(f"MLlib MLP ({layers})", t_full, t_one, iterations, auc(model))
    frame.unpersist()
    test.unpersist()
    return names, n_fit, rows, results


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _warm_up(frame, names) -> None:
    """Two-iteration GBT fits (with and without validation rows), so no timed fit comes first."""
    from sparkhep.config import ModelConfig
    from sparkhep.train.pipeline import fit_pipeline

    warm = ModelConfig(engine="gbt", params={"maxIter": 2})
    fit_pipeline(frame, names, warm)
    fit_pipeline(frame, names, warm, early_stopping=False)


def _print(name, names, n_fit, rows, results, loads):
    base = results[0][1]
    default_gbt = next(r[1] for r in results if "defaults" in r[0])
    print(f"\n### {name}: {rows} events, {n_fit} train+validation, {len(names)} features\n")
    print(f"Load average (1, 5, 15 min) at start {loads[0]}, at end {loads[1]}.\n")
    print("| engine | wall time (s) | vs single-node xgboost | vs default GBT | fixed overhead (s)"
          " | per iteration (s) | iterations | weighted test AUC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for engine, full, overhead, per_iteration, iterations, score in results:
        print(f"| {engine} | {full:.1f} | {full / base:.2f}x | {default_gbt / full:.2f}x less | "
              f"{overhead:.1f} | {per_iteration:.3f} | {iterations} | "
              f"{score.value:.4f} ± {score.error:.4f} |")  # fmt: skip
    ours = next(r for r in results if "sparkhep" in r[0])
    for engine, full, *_ in results:
        if "as read" in engine:
            print(f"\n{ours[0]}: {full / ours[1]:.2f}x less wall time than {engine}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=0, help="SYNTHETIC events per class (0: none)"
    )
    parser.add_argument("--no-pythia", action="store_true", help="skip the Pythia samples")
    parser.add_argument(
        "--pythia",
        default=os.environ.get("SPARKHEP_SHARED_DATA", "/work/shared/data") + "/pythia",
        help="directory of the Pythia ROOT files",
    )
    args = parser.parse_args(argv)

    spark = bench_session("sparkhep-bench-train")
    work = Path(tempfile.mkdtemp(prefix="sparkhep-bench-train-"))
    spark.sparkContext.setCheckpointDir(str(work / "checkpoints"))
    models = _shipped_models()
    gbt = models["gbt"]
    datasets = []
    if not args.no_pythia:
        config = _config(
            work / "pythia", f"{args.pythia}/ttbar_*.root", f"{args.pythia}/qcd_*.root"
        )
        datasets.append(("Pythia (real)", work / "pythia", config, models))
    if args.events:
        config = synthetic_config(work, args.events)
        large = {**models, "gbt": replace(gbt, params={**gbt.params, **LARGE_SAMPLE_GBT})}
        datasets.append((f"SYNTHETIC {2 * args.events} events", work / "synthetic", config, large))
    try:
        for name, directory, config, dataset_models in datasets:
            table = _table(spark, config, directory)
            rows = table.count()
            start = _load()
            measured = _bench_dataset(spark, name, table, rows, dataset_models)
            _print(name, *measured, (start, _load()))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
