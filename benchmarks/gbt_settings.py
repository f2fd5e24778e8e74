"""MLlib GBT settings against ``GBTClassifier`` defaults (100 trees), on one feature table.

The exploration behind BENCHMARKS.md "Train" (why the MLlib GBT stops at 2x): builds the
feature table of ``--events`` SYNTHETIC events per class once (as ``benchmarks/train.py`` does),
puts the fit rows in the train job's layout (``spread_over_cores``, or ``--partitions N``), warms
the JVM up, then fits MLlib's defaults for 100 iterations and every setting given, each a JSON
object of ``GBTClassifier`` parameters over sparkhep's ``GBT_DEFAULTS`` (early stopping on the
validation rows). Prints wall time, trees and weighted test AUC per fit, in the same JVM.

    .venv/bin/python benchmarks/gbt_settings.py --events 500000 \\
        '{"stepSize": 0.5}' '{"stepSize": 0.5, "maxDepth": 6}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train as bench_train  # benchmarks/train.py: the same table and warm-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help="JSON objects of GBTClassifier parameters")
    parser.add_argument("--events", type=int, default=100_000, help="SYNTHETIC events per class")
    parser.add_argument("--partitions", type=int, default=0, help="0: the train job's layout")
    args = parser.parse_args(argv)
    settings = [json.loads(text) for text in args.settings]

    from sparkhep.config import ModelConfig
    from sparkhep.evaluate.metrics import physics_metrics
    from sparkhep.evaluate.scores import collect_scores
    from sparkhep.train.pipeline import fit_pipeline

    spark = bench_train.bench_session("sparkhep-bench-gbt-settings")
    work = Path(tempfile.mkdtemp(prefix="sparkhep-bench-gbt-"))
    try:
        table = bench_train._table(spark, bench_train.synthetic_config(work, args.events), work)
        names, _, _, frame, test = bench_train.fit_rows(table, partitions=args.partitions)
        print(f"{frame.count()} fit rows in {frame.rdd.getNumPartitions()} partitions", flush=True)
        bench_train._warm_up(frame, names)

        def ours(params):
            return fit_pipeline(frame, names, ModelConfig(engine="gbt", params=params))

        def defaults():
            return bench_train.default_gbt(frame, names, 100)

        fits = [("GBTClassifier defaults, 100 trees", defaults)]
        fits += [(json.dumps(s), lambda s=s: ours(s)) for s in settings]
        for name, fit in fits:
            start = time.perf_counter()
            model = fit()
            seconds = time.perf_counter() - start
            auc = physics_metrics(*collect_scores(model.transform(test)), n_bootstrap=20)
            print(
                f"{name}: {seconds:.1f} s, {model.stages[-1].getNumTrees} trees, test AUC "
                f"{auc['test_auc'].value:.4f} ± {auc['test_auc'].error:.4f}, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
