"""The spark-submit commands ``submit/sparkhep-submit`` builds, checked without running them."""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "submit" / "sparkhep-submit"


def _load_script():
    loader = SourceFileLoader("sparkhep_submit", str(SCRIPT))
    spec = importlib.util.spec_from_loader("sparkhep_submit", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sparkhep_submit"] = module
    loader.exec_module(module)
    return module


submit = _load_script()
PACKED = submit.PackedEnvironment(venv=Path("/envs/k/venv"), archive=Path("/envs/k/env.tar.gz"))
SPARK_HOME = Path("/opt/spark")
CALLER_ENV = {"PATH": "/usr/bin", "PYSPARK_DRIVER_PYTHON": "ipython", "PYSPARK_PYTHON": "python3"}


def _build(target: str, *, deploy_mode: str = "client", master=None, overrides=(), tmp_path):
    settings = submit.spark_settings(REPO / "conf" / "spark" / f"{target}.conf", overrides)
    return submit.build_submission(
        target=target,
        job="train",
        job_args=["--config", "conf/jobs/demo.toml", "--set", "model.params.maxIter=5"],
        settings=settings,
        spark_home=SPARK_HOME,
        master=master,
        deploy_mode=deploy_mode,
        packed=PACKED,
        local_python=Path("/repo/.venv/bin/python"),
        workdir=tmp_path,
        base_env=CALLER_ENV,
    )


def _confs(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--conf"]
    return dict(pair.split("=", 1) for pair in pairs)


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _job_args(argv: list[str]) -> list[str]:
    return argv[argv.index(str(REPO / "jobs" / "train.py")) + 1 :]


def test_standalone_is_client_mode_with_packed_environment(tmp_path):
    run = _build(
        "standalone",
        master="spark://head:7077",
        overrides=["spark.executor.memory=3g"],
        tmp_path=tmp_path,
    )
    argv = run.argv
    assert argv[0] == "/opt/spark/bin/spark-submit"
    assert _flag(argv, "--master") == "spark://head:7077"
    assert _flag(argv, "--deploy-mode") == "client"
    assert _flag(argv, "--archives") == "/envs/k/env.tar.gz#environment"
    config = tmp_path / "conf" / "jobs" / "demo.toml"
    assert _flag(argv, "--files") == str(config)
    confs = _confs(argv)
    assert confs["spark.pyspark.python"] == "./environment/bin/python"
    assert confs["spark.pyspark.driver.python"] == "/envs/k/venv/bin/python"
    assert confs["spark.executor.memory"] == "3g"  # --conf wins over standalone.conf
    assert confs["spark.dynamicAllocation.enabled"] == "false"
    assert confs["spark.sql.execution.arrow.maxRecordsPerBatch"] == "10000"
    assert "spark.master" not in confs
    assert _job_args(argv) == ["--config", str(config), "--set", "model.params.maxIter=5"]
    assert run.environment_link == tmp_path / "environment"
    assert "PYSPARK_DRIVER_PYTHON" not in run.env
    assert "PYSPARK_PYTHON" not in run.env
    assert run.env["SPARK_HOME"] == "/opt/spark"


def test_yarn_cluster_mode_never_sets_the_driver_python(tmp_path):
    run = _build("yarn", deploy_mode="cluster", tmp_path=tmp_path)
    argv = run.argv
    assert _flag(argv, "--master") == "yarn"
    assert _flag(argv, "--deploy-mode") == "cluster"
    assert _flag(argv, "--archives") == "/envs/k/env.tar.gz#environment"
    confs = _confs(argv)
    assert confs["spark.pyspark.python"] == "./environment/bin/python"
    assert confs["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert "spark.pyspark.driver.python" not in confs
    assert "PYSPARK_DRIVER_PYTHON" not in run.env
    assert confs["spark.executor.memoryOverhead"] == "2g"
    assert confs["spark.yarn.maxAppAttempts"] == "1"
    # The driver runs in the application master's container: it reads the shipped copy.
    assert _flag(argv, "--files") == str(tmp_path / "conf" / "jobs" / "demo.toml")
    assert _job_args(argv)[:2] == ["--config", "demo.toml"]
    assert run.environment_link is None


def test_yarn_client_mode_runs_the_driver_in_the_packed_venv(tmp_path):
    run = _build("yarn", tmp_path=tmp_path)
    confs = _confs(run.argv)
    assert _flag(run.argv, "--deploy-mode") == "client"
    assert confs["spark.pyspark.driver.python"] == "/envs/k/venv/bin/python"
    assert confs["spark.pyspark.python"] == "./environment/bin/python"
    assert run.environment_link == tmp_path / "environment"


def test_local_uses_the_project_interpreter_and_ships_nothing(tmp_path):
    run = _build("local", tmp_path=tmp_path)
    assert "--archives" not in run.argv
    assert _flag(run.argv, "--master") == "local[*]"
    confs = _confs(run.argv)
    assert confs["spark.pyspark.python"] == "/repo/.venv/bin/python"
    assert run.env["PYSPARK_PYTHON"] == "/repo/.venv/bin/python"


@pytest.mark.parametrize(
    ("target", "deploy_mode", "master", "message"),
    [
        ("standalone", "cluster", "spark://h:7077", "not possible on 'standalone'"),
        ("standalone", "client", None, "needs the master URL"),
        ("standalone", "client", "yarn", "needs the master URL"),
        ("local", "cluster", None, "not possible on 'local'"),
        ("k8s", "client", None, "unknown target 'k8s'"),
    ],
)
def test_impossible_submissions_are_refused(target, deploy_mode, master, message):
    with pytest.raises(submit.SubmitError, match=message):
        submit.check_target(target=target, job="train", deploy_mode=deploy_mode, master=master)


def test_settings_the_script_owns_are_refused_from_conf():
    with pytest.raises(submit.SubmitError, match=r"spark\.pyspark\.python"):
        submit.spark_settings(
            REPO / "conf" / "spark" / "standalone.conf", ["spark.pyspark.python=/usr/bin/python3"]
        )
    with pytest.raises(submit.SubmitError, match="expected KEY=VALUE"):
        submit.spark_settings(REPO / "conf" / "spark" / "standalone.conf", ["spark.x"])


def test_job_without_config_is_refused(tmp_path):
    with pytest.raises(submit.SubmitError, match="--config FILE"):
        submit.build_submission(
            target="standalone",
            job="convert",
            job_args=["--set", "a=1"],
            settings={},
            spark_home=SPARK_HOME,
            master="spark://h:7077",
            packed=PACKED,
            workdir=tmp_path,
            base_env={},
        )


def test_predict_needs_no_config_and_ships_none(tmp_path):
    job_args = ["models:/tthad@champion", "hdfs://nn/user/me/samples/ttbar", "--output", "s"]
    run = submit.build_submission(
        target="yarn",
        job="predict",
        job_args=job_args,
        settings={},
        spark_home=SPARK_HOME,
        deploy_mode="cluster",
        packed=PACKED,
        workdir=tmp_path,
        base_env={},
    )
    assert "--files" not in run.argv
    assert _flag(run.argv, "--archives") == "/envs/k/env.tar.gz#environment"
    script = run.argv.index(str(REPO / "jobs" / "predict.py"))
    assert run.argv[script + 1 :] == job_args


def test_config_given_with_equals_sign(tmp_path):
    run = submit.build_submission(
        target="yarn",
        job="convert",
        job_args=["--config=jobs/x.toml"],
        settings={},
        spark_home=SPARK_HOME,
        deploy_mode="cluster",
        packed=PACKED,
        workdir=tmp_path,
        base_env={},
    )
    assert run.argv[-1] == "--config=x.toml"
    assert _flag(run.argv, "--files") == str(tmp_path / "jobs" / "x.toml")


def test_environment_key_follows_sources_and_requirements(tmp_path):
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "lib" / "pkg" / "a.py").write_text("A = 1\n")
    python = Path(sys.executable)
    first = submit.environment_key(tmp_path, python)
    assert submit.environment_key(tmp_path, python) == first
    (tmp_path / "lib" / "pkg" / "__pycache__").mkdir()
    (tmp_path / "lib" / "pkg" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert submit.environment_key(tmp_path, python) == first
    (tmp_path / "lib" / "pkg" / "a.py").write_text("A = 2\n")
    second = submit.environment_key(tmp_path, python)
    assert second != first
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['numpy']\n")
    assert submit.environment_key(tmp_path, python) not in {first, second}


def test_environment_link_replaces_only_a_link(tmp_path):
    link = tmp_path / "environment"
    submit.link_environment(link, tmp_path / "a")
    submit.link_environment(link, tmp_path / "b")
    assert link.readlink() == tmp_path / "b"
    other = tmp_path / "other" / "environment"
    other.mkdir(parents=True)
    with pytest.raises(submit.SubmitError, match="not a symbolic link"):
        submit.link_environment(other, tmp_path / "b")


def test_dry_run_prints_the_command(capsys, tmp_path):
    code = submit.main(
        [
            "yarn",
            "--deploy-mode",
            "cluster",
            "--dry-run",
            "--cache",
            str(tmp_path),
            "--conf",
            "spark.executor.instances=8",
            "convert",
            "--config",
            str(REPO / "conf" / "jobs" / "demo.toml"),
        ]
    )
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert "--deploy-mode cluster" in line
    assert "--conf spark.executor.instances=8" in line
    assert f"{tmp_path}/" in line and "env.tar.gz#environment" in line
    assert not any(tmp_path.iterdir())  # a dry run packs nothing
