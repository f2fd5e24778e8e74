"""Losing a worker while ``convert`` runs: tasks are lost, re-run on the other worker, and the
output has exactly the generated events, each once."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from services import (
    REPO,
    StandaloneCluster,
    executor_workers,
    free_port,
    get_json,
    read_events,
    submit_command,
    task_ends,
    wait_until,
)
from sparkhep.generate import write_sample

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

# Enough for tens of seconds of convert on two one-core workers: 8 files (= 8 tasks) per sample.
EVENTS_PER_KIND = 120_000
FILES_PER_KIND = 8
VICTIM = 1


@pytest.fixture(scope="module")
def big_sample(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("synthetic-big")
    write_sample(
        directory, kind="signal", n_events=EVENTS_PER_KIND, n_files=FILES_PER_KIND, seed=31
    )
    write_sample(
        directory, kind="background", n_events=EVENTS_PER_KIND, n_files=FILES_PER_KIND, seed=32
    )
    return directory


def running_task_on(ui: str, cluster: StandaloneCluster, worker: int) -> dict | None:
    """A running task of an active stage on ``worker``'s executor, from the application's REST
    API; None while there is none (or the application is not up yet)."""
    apps = get_json(f"{ui}/api/v1/applications")
    if not apps:
        return None
    base = f"{ui}/api/v1/applications/{apps[0]['id']}"
    executors = get_json(f"{base}/executors") or []
    on_worker = {
        e["id"]
        for e in executors
        if e["id"] != "driver"
        and cluster.workers.index(cluster.worker_of(e["executorLogs"]["stdout"])) == worker
    }
    for stage in get_json(f"{base}/stages?status=active") or []:
        tasks = get_json(f"{base}/stages/{stage['stageId']}/{stage['attemptId']}/taskList") or []
        for task in tasks:
            if task["status"] == "RUNNING" and task["executorId"] in on_worker:
                return {"stage": stage["stageId"], "name": stage["name"], **task}
    return None


def test_convert_survives_losing_a_worker(standalone, big_sample, tmp_path):
    output = tmp_path / "out"
    events_dir = tmp_path / "events"
    ui_port = free_port()
    command = submit_command(
        standalone,
        "convert",
        "--config",
        str(REPO / "conf" / "jobs" / "demo.toml"),
        "--set",
        f"job.output='{output}'",
        "--set",
        f"samples.synthetic_ttbar.paths=['{big_sample}/synthetic_signal_*.root']",
        "--set",
        f"samples.synthetic_qcd.paths=['{big_sample}/synthetic_background_*.root']",
        ui_port=ui_port,
        event_dir=events_dir,
    )
    log = tmp_path / "convert.log"
    with open(log, "w") as out:
        job = subprocess.Popen(
            command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        victim = standalone.workers[VICTIM]
        task = wait_until(
            lambda: running_task_on(f"http://127.0.0.1:{ui_port}", standalone, VICTIM),
            timeout=300,
            what=f"a running task on worker {VICTIM}",
        )
        victim.service.kill(signal.SIGKILL)
        victim.service.process.wait(timeout=30)
        assert job.poll() is None, "the job ended before the worker was lost"
        returncode = job.wait(timeout=420)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert returncode == 0, "\n".join(text.splitlines()[-60:])

    # Exactly the generated events, none twice.
    for name in ("synthetic_ttbar", "synthetic_qcd"):
        table = ds.dataset(output / "samples" / name, format="parquet").to_table(
            columns=["run", "luminosityBlock", "event"]
        )
        assert table.num_rows == EVENTS_PER_KIND
        distinct = table.group_by(["run", "luminosityBlock", "event"]).aggregate([]).num_rows
        assert distinct == EVENTS_PER_KIND

    # Tasks were lost with the worker's executor and re-run, successfully, on the other worker.
    events = read_events(events_dir)
    workers = executor_workers(events, standalone)
    ends = task_ends(events)
    lost = [e for e in ends if e["Task End Reason"]["Reason"] == "ExecutorLostFailure"]
    assert lost, f"no task was lost; killed worker {VICTIM} during {task}"
    assert {workers[e["Task Info"]["Executor ID"]] for e in lost} == {VICTIM}
    lost_tasks = {(e["Stage ID"], e["Task Info"]["Index"]) for e in lost}
    reruns = [
        e
        for e in ends
        if e["Task End Reason"]["Reason"] == "Success"
        and (e["Stage ID"], e["Task Info"]["Index"]) in lost_tasks
    ]
    assert {(e["Stage ID"], e["Task Info"]["Index"]) for e in reruns} == lost_tasks
    assert {workers[e["Task Info"]["Executor ID"]] for e in reruns} == {1 - VICTIM}
    state = standalone.state()
    assert state["aliveworkers"] == 1
