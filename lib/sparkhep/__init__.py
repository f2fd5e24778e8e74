"""sparkhep: ROOT files to a trained, versioned, served classifier.

Importing the package is cheap: it pulls in neither pyspark nor uproot, so the serving path
stays free of Spark and the JVM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__version__ = "0.1.0"


def register(spark: SparkSession) -> None:
    """Make ``spark.read.format("root")`` available in this session.

    The Python workers of the session must be able to import sparkhep (start pyspark with
    ``PYSPARK_PYTHON`` pointing at the project's environment, or use
    ``sparkhep.session.build_session``); where they cannot, the first read says so.

    Args:
        spark: the session to register the data source in.
    """
    from sparkhep.root.source import register_root_source

    register_root_source(spark)
