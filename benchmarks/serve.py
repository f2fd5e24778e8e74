"""Serving benchmark: ``sparkhep serve`` against two baselines measured in the same run.

Trains, on SYNTHETIC events from ``sparkhep generate``, a GBT of exactly 100 trees of depth 5
(no early stopping) and an MLP, and saves them with sparkhep's two-flavor MLflow flavor. Then,
from a second process (``wrk``, bounded by ``--seconds`` per point) on 127.0.0.1, it measures
requests/s and p50/p99 latency at concurrency 1, 8 and 32, for 1-event and 1000-event
``/invocations`` requests, of:

- ``sparkhep serve`` (numpy/Treelite scorer, no JVM) for the GBT and the MLP;
- baseline (a): the same GBT ``PipelineModel`` logged with plain ``mlflow.spark.save_model`` and
  served by ``mlflow models serve --env-manager local`` (Spark inside);
- baseline (b): a FastAPI endpoint on the same stack (uvicorn, one process) that reads the body
  and returns a constant: the ceiling of the HTTP stack on this machine.

And in-process: µs per event for one event and events/s for 10⁵ events of the sparkhep GBT
scorer, against XGBoost's native predictor (``inplace_predict``, one thread) on a model of the
same size (100 trees, depth 5) trained on the same features.

Needs ``wrk`` (``apt-get install wrk``) and Java (baseline (a) and the training).

    .venv/bin/python benchmarks/serve.py --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONCURRENCY = (1, 8, 32)
EVENTS_PER_REQUEST = (1, 1000)
STARTUP_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train(work: Path, events: int):
    """Feature table and the fitted GBT (100 trees, depth 5) and MLP pipelines."""
    from pyspark.sql import functions as F
    from sparkhep.config import load_config
    from sparkhep.convert import convert_samples, sample_output
    from sparkhep.generate import write_demo_samples
    from sparkhep.session import build_session
    from sparkhep.train.job import constant_features, feature_table
    from sparkhep.train.pipeline import VALIDATION, fit_pipeline
    from sparkhep.train.weights import training_weights

    data = work / "synthetic"
    write_demo_samples(data, n_events=events, seed=21)
    spark = build_session(
        app_name="sparkhep-bench-serve",
        overrides={"spark.master": "local[2]", "spark.ui.enabled": "false"},
    )
    config = load_config(
        REPO / "conf/jobs/demo.toml",
        overrides=[
            f"job.output='{work / 'job'}'",
            f"samples.synthetic_ttbar.paths=['{data}/synthetic_signal_*.root']",
            f"samples.synthetic_qcd.paths=['{data}/synthetic_background_*.root']",
            "model.gbt.maxIter=100",
            "model.gbt.maxDepth=5",
        ],
    )
    convert_samples(spark, config, branches=config.features.branches_to_read())
    paths = {s.name: sample_output(config, s.name) for s in config.samples}
    table = feature_table(spark, config, paths).cache()
    declared = config.features.feature_names()
    dropped = constant_features(table.filter("split = 'train'"), declared)
    names = [n for n in declared if n not in dropped]
    rows = training_weights(
        table.filter("split != 'test'"), config.weights, engine="gbt"
    ).withColumn(VALIDATION, F.col("split") == "validation")
    gbt = fit_pipeline(rows, names, config.model, early_stopping=False)
    mlp_config = load_config(config.source, overrides=["model.engine='mlp'"]).model
    mlp = fit_pipeline(rows, names, mlp_config)
    test = table.filter("split = 'test'").select(*names).toPandas()
    train = table.filter("split = 'train'").select(*names, "label").toPandas()
    raw = spark.read.parquet(paths["synthetic_ttbar"]).select(*config.features.branches())
    return spark, config, names, gbt, mlp, test, train, raw.limit(2).toArrow()


def _save_models(work: Path, config, names, gbt, mlp, test, raw) -> dict[str, Path]:
    import mlflow.spark
    from sparkhep.registry.flavor import save_model

    dirs = {"gbt": work / "gbt", "mlp": work / "mlp", "spark": work / "spark-plain"}
    for engine, pipeline in (("gbt", gbt), ("mlp", mlp)):
        save_model(
            pipeline,
            dirs[engine],
            feature_spec=config.features,
            feature_names=names,
            raw_example=raw,
            input_example=test.head(2),
            engine=engine,
        )
    mlflow.spark.save_model(
        gbt, str(dirs["spark"]), input_example=test.head(2), pip_requirements=["pyspark"]
    )
    return dirs


CONSTANT_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()


@app.post("/invocations")
async def invocations(request: Request) -> Response:
    await request.body()
    return Response(b'{"predictions": [0.5]}', media_type="application/json")
"""


class Server:
    """A server subprocess in its own process group, stopped for sure on exit."""

    def __init__(self, name: str, command: list[str], port: int, env: dict | None = None):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}/invocations"
        self.log = Path(tempfile.mkdtemp(prefix="bench-")) / f"{name.split()[0]}.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    def wait_ready(self, body: bytes) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        for _ in range(STARTUP_SECONDS * 4):
            if self.process.poll() is not None:
                break
            try:
                post(self.url, body)
                return
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.25)
        self.stop()
        log = self.log.read_text()[-3000:]
        raise RuntimeError(f"{self.name} did not answer within {STARTUP_SECONDS} s:\n{log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def _body(test, n_events: int) -> bytes:
    rows = test.head(n_events)
    return json.dumps({"dataframe_split": rows.to_dict(orient="split")}).encode()


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(url: str, body: bytes, *, connections: int, seconds: int, work: Path) -> dict:
    """Requests/s and p50/p99 (ms) of ``wrk`` POSTing ``body`` for ``seconds``."""
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"
    )
    duration = max(1, seconds)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "30s"]
    done = subprocess.run(
        [*command, "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration * 4 + 60,
        check=True,
    )
    out = done.stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed requests under load:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))

    def ms(text: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
        return float(number) * UNIT[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms(latency["50"]),
        "p99": ms(latency["99"]),
    }


def _in_process(dirs: dict[str, Path], test, train, names) -> dict[str, float]:
    """µs/event at 1 event and events/s at 10⁵ events: sparkhep GBT scorer vs XGBoost."""
    import xgboost
    from sparkhep.scoring import load_scoring_model

    model = load_scoring_model(dirs["gbt"])
    x = test.to_numpy(dtype=np.float64)
    big = np.ascontiguousarray(np.resize(x, (100_000, x.shape[1])))
    booster = xgboost.train(
        {"max_depth": 5, "objective": "binary:logistic", "tree_method": "hist", "nthread": 1},
        xgboost.DMatrix(train[names].to_numpy(dtype=np.float64), label=train["label"]),
        num_boost_round=100,
    )

    def one_event(predict) -> float:
        times = []
        for i in range(2000):
            row = x[i % len(x) : i % len(x) + 1]
            start = time.perf_counter()
            predict(row)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6

    def throughput(predict) -> float:
        best = min(_seconds(lambda: predict(big)) for _ in range(3))
        return len(big) / best

    def native(rows):
        return booster.inplace_predict(rows)

    return {
        "sparkhep_us_per_event": one_event(model.predict_matrix),
        "xgboost_us_per_event": one_event(native),
        "sparkhep_events_per_s": throughput(model.predict_matrix),
        "xgboost_events_per_s": throughput(native),
    }


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="SYNTHETIC events per class")
    parser.add_argument("--seconds", type=int, default=5, help="load duration per point")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("benchmarks/serve.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sparkhep-bench-serve-"))
    spark, config, names, gbt, mlp, test, train, raw = _train(work, args.events)
    dirs = _save_models(work, config, names, gbt, mlp, test, raw)
    spark.stop()
    inproc = _in_process(dirs, test, train, names)
    (work / "constant_app.py").write_text(CONSTANT_APP)

    no_java = {"PATH": str(BIN) + os.pathsep + "/usr/bin:/bin", "JAVA_HOME": ""}
    here = ["--host", "127.0.0.1"]
    servers = {
        "sparkhep serve GBT": (
            [str(BIN / "sparkhep"), "serve", f"gbt={dirs['gbt']}", "--poll-interval", "0", *here],
            "--port",
            no_java,
        ),
        "sparkhep serve MLP": (
            [str(BIN / "sparkhep"), "serve", f"mlp={dirs['mlp']}", "--poll-interval", "0", *here],
            "--port",
            no_java,
        ),
        "(b) FastAPI constant": (
            [str(BIN / "uvicorn"), "--app-dir", str(work), "constant_app:app", *here],
            "--port",
            {},
        ),
        "(a) mlflow models serve (Spark)": (
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                str(dirs["spark"]),
                "--env-manager",
                "local",
                *here,
            ],
            "-p",
            # mlflow execs `uvicorn` from PATH
            {"PATH": str(BIN) + os.pathsep + os.environ.get("PATH", "")},
        ),
    }
    results: dict[tuple[str, int, int], dict] = {}
    for name, (command, port_flag, env) in servers.items():
        port = _free_port()
        command = [*command, port_flag, str(port)]
        server = Server(name, command, port, env)
        try:
            server.wait_ready(_body(test, 1))
            for n_events in EVENTS_PER_REQUEST:
                body = _body(test, n_events)
                answer = post(server.url, body)
                if "constant" not in name and len(answer["predictions"]) != n_events:
                    raise RuntimeError(f"{name}: {answer!r:.200} for {n_events} events")
                _wrk(server.url, body, connections=1, seconds=1, work=work)  # warm-up
                for connections in CONCURRENCY:
                    point = _wrk(
                        server.url, body, connections=connections, seconds=args.seconds, work=work
                    )
                    results[name, n_events, connections] = point
                    print(f"{name:34} {n_events:5} ev  c={connections:<3} {point}", flush=True)
        finally:
            server.stop()

    print(f"\nload average {os.getloadavg()[0]:.1f} (2 cores); {args.seconds:.0f} s per point\n")
    columns = ["server", "events/request", "concurrency", "requests/s", "p50 ms", "p99 ms"]
    print("| " + " | ".join([*columns, "vs (b)", "vs (a)"]) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for (name, n_events, connections), point in results.items():
        constant = results.get(("(b) FastAPI constant", n_events, connections))
        spark_base = results.get(("(a) mlflow models serve (Spark)", n_events, connections))
        ratio_b = f"{point['rps'] / constant['rps']:.2f}x" if constant else ""
        ratio_a = f"{point['rps'] / spark_base['rps']:.1f}x" if spark_base else ""
        print(
            f"| {name} | {n_events} | {connections} | {point['rps']:,.0f} | {point['p50']:.2f} "
            f"| {point['p99']:.2f} | {ratio_b} | {ratio_a} |"
        )
    print("\nIn-process GBT scoring (100 trees, depth 5):")
    print(
        f"  1 event: sparkhep {inproc['sparkhep_us_per_event']:.1f} µs, xgboost inplace_predict "
        f"{inproc['xgboost_us_per_event']:.1f} µs"
    )
    ratio = inproc["sparkhep_events_per_s"] / inproc["xgboost_events_per_s"]
    print(
        f"  10^5 events: sparkhep {inproc['sparkhep_events_per_s']:,.0f} ev/s, xgboost (1 thread) "
        f"{inproc['xgboost_events_per_s']:,.0f} ev/s → ratio {ratio:.2f}"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
