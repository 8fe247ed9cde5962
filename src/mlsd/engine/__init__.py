"""Engines: where batch work runs.

The interface is small: read a dataset version as an Ibis table, run aggregates,
hand results back as Arrow. :class:`DuckDBEngine` (in-process) is the default;
:class:`SparkEngine` runs mlsd's own functions of Arrow batches as Spark tasks
(``mapInArrow``) when the data outgrows one machine (``engine: spark``).
"""

from .._lazy import attach

# ibis and pyspark load on first use
_WHERE = {"DuckDBEngine": "_duckdb", "SparkEngine": "_spark", "spark_session": "_spark"}
__getattr__, __dir__ = attach(__name__, _WHERE)

__all__ = ["DuckDBEngine", "SparkEngine", "spark_session"]
