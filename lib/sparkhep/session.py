"""Build the SparkSession every sparkhep job and test uses.

Settings come from a spark-defaults style file (``conf/spark/<target>.conf``) plus explicit
overrides, so that the same job runs on a laptop, a standalone cluster or YARN unchanged.
In local mode the Python workers must be the running interpreter: the Python Data Source
planner worker ignores ``spark.pyspark.python`` alone and would start the system ``python3``
(which lacks pyarrow and uproot), so ``PYSPARK_PYTHON`` is set in the environment too.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

PROJECT_CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "spark"


def read_spark_conf(path: Path) -> dict[str, str]:
    """Parse a spark-defaults style file: ``key value`` per line, ``#`` comments.

    Args:
        path: the file to read.

    Returns:
        The settings in file order.
    """
    settings: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if not value.strip():
            raise ValueError(f"{path}:{number}: expected 'key value', got {raw!r}")
        settings[key] = value.strip()
    return settings


def default_conf_file(target: str = "local") -> Path | None:
    """The project's ``conf/spark/<target>.conf`` if this is a source checkout, else None."""
    for base in (Path.cwd() / "conf" / "spark", PROJECT_CONF_DIR):
        candidate = base / f"{target}.conf"
        if candidate.is_file():
            return candidate
    return None


def build_session(
    *,
    app_name: str = "sparkhep",
    conf_file: Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> SparkSession:
    """Get or create the SparkSession, with the ``root`` data source registered.

    Under ``spark-submit`` the session already configured by the submit command is reused and
    only the overrides are applied on top.

    Args:
        app_name: the Spark application name.
        conf_file: spark-defaults style settings; the project's ``local.conf`` when omitted.
        overrides: settings that win over the file (e.g. ``{"spark.master": "local[2]"}``).

    Returns:
        The active SparkSession.
    """
    from pyspark.sql import SparkSession

    import sparkhep

    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # Under spark-submit the submit command already chose the master and the settings.
        settings = dict(overrides or {})
    else:
        path = conf_file or default_conf_file("local")
        settings = read_spark_conf(path) if path else {}
        settings.update(overrides or {})
        if settings.setdefault("spark.master", "local[*]").startswith("local"):
            os.environ["PYSPARK_PYTHON"] = sys.executable
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            settings.setdefault("spark.pyspark.python", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    sparkhep.register(spark)
    log.info("Spark %s session %s on %s", spark.version, app_name, spark.sparkContext.master)
    return spark
