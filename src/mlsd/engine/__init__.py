"""Engines: where batch work runs.

The interface is small: read a dataset version as an Ibis table, run aggregates,
hand results back as Arrow. :class:`DuckDBEngine` (in-process) is the default;
a Spark engine can implement the same methods for data that outgrows one machine.
"""

from ._duckdb import DuckDBEngine

__all__ = ["DuckDBEngine"]
