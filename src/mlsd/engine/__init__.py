"""Engines: where batch work runs.

The interface is small: read a dataset version as an Ibis table, run aggregates,
hand results back as Arrow. :class:`DuckDBEngine` (in-process) is the default;
a Spark engine can implement the same methods for data that outgrows one machine.
"""

from .._lazy import attach

_WHERE = {"DuckDBEngine": "_duckdb"}  # ibis loads on first use
__getattr__, __dir__ = attach(__name__, _WHERE)

__all__ = ["DuckDBEngine"]
