"""The default engine: DuckDB in-process, driven through Ibis."""

from __future__ import annotations

import itertools
from typing import Any

import ibis
import pyarrow as pa

from ..lake import Lake

_ids = itertools.count()


class DuckDBEngine:
    """Runs batch work on an in-process DuckDB through Ibis expressions.

    Delta versions are opened with ``deltalake`` and registered as pyarrow
    datasets (DuckDB's delta extension cannot be downloaded offline), which keeps
    filter and projection pushdown.

    Parameters
    ----------
    lake : Lake, optional
        Where :meth:`table` reads datasets from.
    threads : int
        DuckDB worker threads.
    memory_limit : str
        DuckDB memory limit, e.g. ``"2GB"``.
    """

    name = "duckdb"
    supports_streaming = True

    def __init__(self, *, lake: Lake | None = None, threads: int = 2,
                 memory_limit: str = "2GB"):
        self.lake = lake
        self.threads = threads
        self.memory_limit = memory_limit
        self._con = None

    @property
    def con(self) -> ibis.BaseBackend:
        if self._con is None:
            self._con = ibis.duckdb.connect(threads=self.threads,
                                            memory_limit=self.memory_limit)
        return self._con

    def table(self, area: str, name: str, version: int | None = None
              ) -> ibis.Table:
        """One dataset version as an Ibis table."""
        if self.lake is None:
            raise ValueError("this engine has no lake to read datasets from")
        ds = self.lake.dataset(area, name, version)
        view = f"{area}__{name}__v{version}__{next(_ids)}".replace("-", "_").replace(
            ".", "_")
        self.con.con.register(view, ds)
        return self.con.table(view)

    def from_arrow(self, table: pa.Table) -> ibis.Table:
        """An in-memory Arrow table as an Ibis table."""
        view = f"mem__{next(_ids)}"
        self.con.con.register(view, table)
        return self.con.table(view)

    def forget(self, table: ibis.Table) -> None:
        """Drop the view :meth:`from_arrow` registered for ``table`` (its rows
        are then freed when nothing else holds them)."""
        name = table.get_name()
        if name.startswith("mem__"):
            self.con.con.unregister(name)

    def to_arrow(self, expr: ibis.Expr) -> pa.Table:
        return self.con.to_pyarrow(expr)

    def batches(self, expr: ibis.Expr, rows: int = 65_536):
        """Stream the rows of ``expr`` as Arrow record batches of at most
        ``rows`` rows (nothing is held whole in memory)."""
        # ibis 12's to_pyarrow_batches calls a DuckDB method that DuckDB 2 no
        # longer has; DuckDB's own reader streams the compiled query instead
        sql = self.con.compile(expr)
        return self.con.con.sql(sql).to_arrow_reader(rows)

    def aggregate(self, table: ibis.Table, **metrics: ibis.Expr) -> dict[str, Any]:
        """Run named scalar aggregates over a table; return plain Python values."""
        if not metrics:
            return {}
        row = self.to_arrow(table.aggregate(**metrics)).to_pylist()[0]
        return row
