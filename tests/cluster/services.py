"""Real components on 127.0.0.1 for the ``cluster`` tests: a Spark standalone cluster (a master and
workers started with ``spark-class``), ``mlflow server`` processes, ``submit/sparkhep-submit``
commands and the Spark event logs they leave.

Every process starts in its own session (process group) and is stopped by a fixture finalizer —
SIGTERM to the group, then SIGKILL after a bounded wait — also when a test fails. Every wait loop
is bounded in both tries and seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[2]
SUBMIT = REPO / "submit" / "sparkhep-submit"
BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
# Small executors: the machine is shared, the samples are small.
EXECUTOR_MEMORY = "1g"
WORKER_MEMORY = "1536m"


def demo_job_args(sample: Path, output: Path, *, max_iter: int, model: str) -> list[str]:
    """Arguments of the demo job (``conf/jobs/demo.toml``) on the SYNTHETIC ``sample``.

    Args:
        sample: a directory of ``sparkhep.generate`` files (both kinds).
        output: the job's output directory.
        max_iter: GBT trees.
        model: the registered model and experiment name.
    """
    return [
        "--config",
        str(REPO / "conf" / "jobs" / "demo.toml"),
        "--set",
        f"job.output='{output}'",
        "--set",
        f"samples.synthetic_ttbar.paths=['{sample}/synthetic_signal_*.root']",
        "--set",
        f"samples.synthetic_qcd.paths=['{sample}/synthetic_background_*.root']",
        "--set",
        f"model.params.maxIter={max_iter}",
        "--set",
        f"mlflow.registered_model='{model}'",
        "--set",
        f"mlflow.experiment='{model}'",
    ]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_until(
    condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.5
) -> object:
    """Poll ``condition`` until it returns something truthy; at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")


def get_json(url: str, *, timeout: float = 3.0) -> object | None:
    """GET ``url`` as JSON; None when nothing (or no JSON) answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return json.load(answer)
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Service:
    """A process started in its own process group, with its log file."""

    name: str
    process: subprocess.Popen
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (JVMs, executors, Python workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, *, grace: float = 15.0) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; wait for the process."""
        if self.process.poll() is None:
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        # Children (executors, Python workers) may outlive the leader: the group goes too.
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        """The end of the log, for failure messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_service(
    name: str, command: list[str], *, log: Path, env: dict[str, str] | None = None, cwd=None
) -> Service:
    """Start ``command`` in a new session with stdout and stderr to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return Service(name, process, log)


def run_job(
    command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a job to its end in its own process group, at most ``timeout`` seconds.

    Unlike ``subprocess.run``, which on a timeout kills only its direct child, this kills the whole
    group afterwards: the spark-submit JVM and its Python workers must not outlive the test.
    """
    job = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = job.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    return subprocess.CompletedProcess(command, job.returncode, stdout, stderr)


@dataclass
class Worker:
    """One standalone worker: its process group, web UI port and work directory."""

    service: Service
    webui_port: int
    work_dir: Path


@dataclass
class StandaloneCluster:
    """A master and its workers on 127.0.0.1."""

    master: Service
    master_url: str
    master_ui: str
    workers: list[Worker] = field(default_factory=list)

    def state(self) -> dict:
        """The master's JSON status page."""
        return get_json(f"{self.master_ui}/json/") or {}

    def worker_of(self, log_url: str) -> Worker:
        """The worker that served an executor, from the port of the executor's log URL."""
        port = urlparse(log_url).port
        for worker in self.workers:
            if worker.webui_port == port:
                return worker
        raise KeyError(f"no worker with web UI port {port} (log URL {log_url})")

    def stop(self) -> None:
        for worker in self.workers:
            worker.service.stop()
        self.master.stop()


def spark_home() -> Path:
    """The pyspark package of the test venv: pip's pyspark ships bin/spark-class and the jars."""
    import pyspark

    return Path(pyspark.__file__).parent


def spark_env(tmp: Path) -> dict[str, str]:
    """Environment for the cluster's JVMs: loopback only, logs and scratch under ``tmp``."""
    return {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": LOOPBACK,
        "SPARK_LOG_DIR": str(tmp / "logs"),
        "SPARK_LOCAL_DIRS": str(tmp / "scratch"),
        "SPARK_PID_DIR": str(tmp),
    }


def start_cluster(tmp: Path, *, workers: int = 2) -> StandaloneCluster:
    """Start a master and ``workers`` one-core workers; return when all are registered."""
    port, ui = free_port(), free_port()
    spark_class = str(spark_home() / "bin" / "spark-class")
    env = spark_env(tmp)
    master = start_service(
        "master",
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        ],
        log=tmp / "logs" / "master.log",
        env=env,
    )
    cluster = StandaloneCluster(master, f"spark://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{ui}")
    try:
        wait_until(cluster.state, timeout=60, what="the Spark master's web UI")
        for index in range(workers):
            webui = free_port()
            work_dir = tmp / f"worker{index}"
            service = start_service(
                f"worker{index}",
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    LOOPBACK,
                    "--cores",
                    "1",
                    "--memory",
                    WORKER_MEMORY,
                    "--webui-port",
                    str(webui),
                    "--work-dir",
                    str(work_dir),
                    cluster.master_url,
                ],
                log=tmp / "logs" / f"worker{index}.log",
                env={**env, "SPARK_WORKER_DIR": str(work_dir)},
            )
            cluster.workers.append(Worker(service, webui, work_dir))
        wait_until(
            lambda: cluster.state().get("aliveworkers") == workers,
            timeout=90,
            what=f"{workers} workers registered with the master",
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


@dataclass
class MlflowServer:
    """An ``mlflow server`` on 127.0.0.1 with a sqlite backend and served local artifacts."""

    uri: str
    port: int
    root: Path
    service: Service | None = None

    def start(self) -> None:
        """Start (or restart, on the same store and port) and wait until it answers."""
        self.service = start_service(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--serve-artifacts",
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            log=self.root / "mlflow-server.log",
        )
        try:
            wait_until(self.healthy, timeout=120, what=f"mlflow server on {self.uri}")
        except TimeoutError:
            self.stop()
            raise

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.service is not None:
            # Nothing to flush: sqlite commits per request; gunicorn/uvicorn linger on SIGTERM.
            self.service.stop(grace=3)
            self.service = None


def submit_command(
    cluster: StandaloneCluster, job: str, *job_args: str, ui_port: int, event_dir: Path
) -> list[str]:
    """``submit/sparkhep-submit standalone`` for one job, with its UI port and event log dir."""
    event_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.driver.memory": "1g",
        "spark.executor.memory": EXECUTOR_MEMORY,
        "spark.executor.pyspark.memory": "1g",
        "spark.ui.port": str(ui_port),
        "spark.eventLog.enabled": "true",
        "spark.eventLog.compress": "false",
        # One plain JSON-lines file per application (Spark 4 rolls event logs by default).
        "spark.eventLog.rolling.enabled": "false",
        "spark.eventLog.dir": event_dir.as_uri(),
        "spark.sql.shuffle.partitions": "4",
    }
    command = [sys.executable, str(SUBMIT), "standalone", "--master", cluster.master_url]
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, job, *job_args]


def read_events(event_dir: Path) -> list[dict]:
    """The Spark listener events of the one application that logged into ``event_dir``."""
    logs = [p for p in event_dir.iterdir() if not p.name.endswith(".inprogress")]
    assert len(logs) == 1, f"expected one finished event log in {event_dir}, found {logs}"
    return [json.loads(line) for line in logs[0].read_text().splitlines() if line.strip()]


def executor_workers(events: list[dict], cluster: StandaloneCluster) -> dict[str, int]:
    """Executor ID → index of the worker that ran it (from the executors' log URLs)."""
    mapping = {}
    for event in events:
        if event["Event"] == "SparkListenerExecutorAdded":
            urls = event["Executor Info"]["Log Urls"]
            worker = cluster.worker_of(urls["stdout"])
            mapping[event["Executor ID"]] = cluster.workers.index(worker)
    return mapping


def task_ends(events: list[dict]) -> list[dict]:
    """The TaskEnd events."""
    return [e for e in events if e["Event"] == "SparkListenerTaskEnd"]
