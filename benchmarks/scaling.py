"""Scaling of the train job (convert → features → train → evaluate → register) with Spark's cores.

The same SYNTHETIC sample is trained through ``submit/sparkhep-submit`` on ``local[1]``,
``local[2]``, and a Spark standalone cluster on 127.0.0.1 with one and with two one-core workers
(client mode, packed environment). Prints wall time and per-step times per setup, and speed-ups as
ratios within this run: ``local[2]`` over ``local[1]``, two workers over one.

    .venv/bin/python benchmarks/scaling.py [--events 40000] [--files 4]

The cluster is started with the test suite's own helpers (``tests/cluster/services.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "cluster"))

from services import LOOPBACK, SUBMIT, demo_job_args, start_cluster  # noqa: E402

LOGS = REPO / "build" / "benchmarks"
MODEL = "scaling-benchmark"
STEP = re.compile(r"time per step\s*: (.*)")


def run(label: str, command: list[str], *, cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Run one submission; return its wall time and step times (seconds)."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{re.sub(r'[^a-z0-9]+', '-', label)}.log"
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"{label} failed (exit {result.returncode}); its output is in {log}")
    steps = STEP.search(result.stdout)
    times = {"wall": wall}
    if steps:
        for part in steps.group(1).split(", "):
            name, seconds, _ = part.split(" ")
            times[name] = float(seconds)
    print(f"{label:<22} " + "  ".join(f"{k} {v:6.1f} s" for k, v in times.items()), flush=True)
    return times


def main() -> int:
    """Run the four setups and print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="SYNTHETIC events per kind")
    parser.add_argument("--files", type=int, default=4, help="files per kind")
    parser.add_argument("--max-iter", type=int, default=20, help="GBT trees")
    args = parser.parse_args()

    from sparkhep.generate import write_sample

    with tempfile.TemporaryDirectory(prefix="sparkhep-scaling-") as scratch:
        tmp = Path(scratch)
        sample = tmp / "sample"
        write_sample(sample, kind="signal", n_events=args.events, n_files=args.files, seed=51)
        write_sample(sample, kind="background", n_events=args.events, n_files=args.files, seed=52)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns.db'}",
            "SPARK_LOCAL_IP": LOOPBACK,
        }
        common = ["--conf", "spark.driver.memory=2g", "--conf", "spark.ui.enabled=false"]
        results: dict[str, dict[str, float]] = {}
        for cores in (1, 2):
            label = f"local[{cores}]"
            command = [sys.executable, str(SUBMIT), "local", "--master", label, *common]
            command += [
                "train",
                *demo_job_args(sample, tmp / f"local{cores}", max_iter=args.max_iter, model=MODEL),
            ]
            results[label] = run(label, command, cwd=tmp, env=env)
        subprocess.run([sys.executable, str(SUBMIT), "pack"], check=True, capture_output=True)
        for workers in (1, 2):
            label = f"standalone {workers} worker" + ("s" if workers > 1 else "")
            cluster = start_cluster(tmp / f"cluster{workers}", workers=workers)
            try:
                command = [sys.executable, str(SUBMIT), "standalone"]
                command += ["--master", cluster.master_url, *common]
                command += ["--conf", "spark.executor.memory=1g"]
                command += ["--conf", f"spark.driver.host={LOOPBACK}"]
                command += [
                    "train",
                    *demo_job_args(
                        sample, tmp / f"sa{workers}", max_iter=args.max_iter, model=MODEL
                    ),
                ]
                results[label] = run(label, command, cwd=tmp, env=env)
            finally:
                cluster.stop()

    print(f"\n{2 * args.events} events, {2 * args.files} files, {args.max_iter} trees")
    for fast, slow in (
        ("local[2]", "local[1]"),
        ("standalone 2 workers", "standalone 1 worker"),
    ):
        ratios = ", ".join(
            f"{step} {results[slow][step] / results[fast][step]:.2f}x"
            for step in results[fast]
            if step in results[slow] and results[fast][step] > 0
        )
        print(f"speed-up {fast} over {slow}: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
