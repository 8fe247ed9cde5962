"""The SQL connector: a table or a query of a database, through SQLAlchemy.

Rows are fetched on the server side in chunks (``stream_results``), so a large
table never has to fit in memory. With a watermark column, extraction is
incremental: only rows whose watermark is above the last one loaded are read,
up to a bound fixed before reading, so rows committed during the extraction wait
for the next run instead of being half-read. Identifiers are quoted by
SQLAlchemy (a table is reflected, never pasted into SQL) and values are bound
parameters.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from ..errors import DataError
from ..formats import DEFAULT_CHUNK_ROWS, ERROR, LINE, RAW
from ._files import FileInfo

_ARROW = [
    (sa.types.Boolean, pa.bool_()),
    (sa.types.Integer, pa.int64()),
    (sa.types.Float, pa.float64()),
    (sa.types.Numeric, pa.float64()),
    (sa.types.DateTime, pa.timestamp("us", tz="UTC")),
    (sa.types.Date, pa.timestamp("us", tz="UTC")),
]


def arrow_type(sql_type: sa.types.TypeEngine) -> pa.DataType:
    """The Arrow type a SQL column maps to (text when unsure)."""
    for cls, t in _ARROW:
        if isinstance(sql_type, cls):
            return t
    return pa.string()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value


@dataclass(frozen=True)
class WatermarkRange:
    """The watermark values a load covers: ``(low, high]``."""

    column: str
    low: Any
    high: Any
    rows: int


class SqlConnector:
    """Reads a table or a query from a database as raw Arrow batches.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``postgresql+psycopg://user@127.0.0.1/db``.
    table, query : str
        Exactly one: a table name (reflected, so quoted safely) or a SELECT.
    schema : str, optional
        The table's schema (namespace).
    watermark : str, optional
        A column that grows with new rows (an id, an ``updated_at``).
    password_env : str, optional
        Environment variable holding the password, kept out of the spec.
    """

    supports_streaming = True

    def __init__(self, *, url: str, table: str | None = None,
                 query: str | None = None, schema: str | None = None,
                 watermark: str | None = None, password_env: str | None = None):
        self.url = url
        self.table = table
        self.query = query
        self.schema = schema
        self.watermark = watermark
        self.password_env = password_env

    # connection ---------------------------------------------------------------
    def _url(self) -> URL:
        try:
            url = make_url(self.url)
        except sa.exc.ArgumentError as err:
            raise DataError(f"not a database URL: {self.url!r} ({err})") from None
        if self.password_env:
            password = os.environ.get(self.password_env)
            if password is None:
                raise DataError(f"the environment variable {self.password_env} "
                                f"(password_env) is not set")
            url = url.set(password=password)
        return url

    @property
    def display(self) -> str:
        """The source, for lineage, without any password."""
        url = self._url().render_as_string(hide_password=True)
        what = self.table if self.table else "query"
        return f"{url}#{what}"

    def engine(self) -> sa.Engine:
        if not hasattr(self, "_engine"):
            try:
                self._engine = sa.create_engine(self._url())
            except (sa.exc.ArgumentError, ImportError, sa.exc.NoSuchModuleError
                    ) as err:
                raise DataError(f"cannot use database {self.display}: {err}"
                                ) from None
        return self._engine

    def close(self) -> None:
        if hasattr(self, "_engine"):
            self._engine.dispose()
            del self._engine

    # what is read ---------------------------------------------------------------
    def _selectable(self) -> sa.FromClause:
        if (self.table is None) == (self.query is None):
            raise DataError("a SQL source needs exactly one of `table` or `query`")
        if self.table is not None:
            try:
                return sa.Table(self.table, sa.MetaData(), schema=self.schema,
                                autoload_with=self.engine())
            except sa.exc.NoSuchTableError:
                raise DataError(f"{self.display}: no table {self.table!r}"
                                + (f" in schema {self.schema!r}" if self.schema
                                   else "")) from None
            except sa.exc.OperationalError as err:
                raise DataError(f"cannot connect to {self.display}: "
                                f"{err.orig}") from None
        return self._query_subquery()

    def _query_subquery(self) -> sa.FromClause:
        # the user's SELECT, wrapped so the watermark filter and order apply to it
        with self._connect() as con:
            result = con.execute(sa.text(f"SELECT * FROM ({self.query}) AS q LIMIT 0"))
            names = [str(k) for k in result.keys()]
        return sa.text(self.query).columns(*[sa.column(n) for n in names]).subquery(
            "q")

    def _connect(self):
        try:
            return self.engine().connect()
        except sa.exc.OperationalError as err:
            raise DataError(f"cannot connect to {self.display}: {err.orig}") from None

    def columns(self) -> list[str]:
        # plain str: SQLAlchemy's quoted_name would leak into YAML and JSON
        return [str(c.name) for c in self._selectable().columns]

    def arrow_types(self) -> dict[str, pa.DataType] | None:
        sel = self._selectable()
        if self.table is None:
            return None
        return {str(c.name): arrow_type(c.type) for c in sel.columns}

    def _wm(self, sel: sa.FromClause) -> sa.ColumnElement:
        if self.watermark not in sel.columns:
            raise DataError(f"{self.display}: watermark column {self.watermark!r} "
                            f"is not among the columns {list(sel.columns.keys())}")
        return sel.columns[self.watermark]

    def plan(self, since: Any = None) -> WatermarkRange | None:
        """The range the next incremental read covers: rows above ``since``."""
        if not self.watermark:
            return None
        sel = self._selectable()
        wm = self._wm(sel)
        stmt = sa.select(sa.func.max(wm), sa.func.count()).select_from(sel)
        if since is not None:
            stmt = stmt.where(wm > sa.bindparam("since", since))
        with self._connect() as con:
            high, rows = con.execute(stmt).one()
        return WatermarkRange(self.watermark, since, _plain(high), int(rows))

    def info(self, window: WatermarkRange | None) -> FileInfo:
        """A lineage record of this extraction (its 'file')."""
        desc = self.display
        if window is not None:
            desc += f" ({window.column} in ({window.low}, {window.high}])"
        elif self.query:
            desc += f" ({' '.join(self.query.split())[:200]})"
        digest = hashlib.sha256(desc.encode()).hexdigest()
        return FileInfo(desc, digest, window.rows if window else 0)

    def read(self, columns: list[str], *, window: WatermarkRange | None = None,
             chunk_rows: int = DEFAULT_CHUNK_ROWS
             ) -> Iterator[tuple[FileInfo, pa.RecordBatch]]:
        """Yield raw (typed) batches of the rows in ``window`` (or all rows)."""
        sel = self._selectable()
        missing = [c for c in columns if c not in sel.columns]
        if missing:
            raise DataError(f"{self.display}: missing column(s) {missing}")
        stmt = sa.select(*[sel.columns[c] for c in columns])
        if window is not None:
            wm = self._wm(sel)
            if window.low is not None:
                stmt = stmt.where(wm > sa.bindparam("low", window.low))
            stmt = stmt.where(wm <= sa.bindparam("high", window.high)).order_by(wm)
        info = self.info(window)
        types = self.arrow_types() or {}
        number = 0
        with self._connect() as con:
            result = con.execution_options(stream_results=True,
                                           yield_per=chunk_rows).execute(stmt)
            for part in result.partitions(chunk_rows):
                n = len(part)
                arrays = []
                for j, c in enumerate(columns):
                    values = [_plain(row[j]) for row in part]
                    try:
                        arrays.append(pa.array(values, types.get(c)))
                    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                        arrays.append(pa.array([None if v is None else str(v)
                                                for v in values], pa.string()))
                arrays += [pa.array(range(number + 1, number + n + 1), pa.int64()),
                           pa.nulls(n, pa.string()), pa.nulls(n, pa.string())]
                number += n
                yield info, pa.RecordBatch.from_arrays(
                    arrays, names=[*columns, LINE, RAW, ERROR])
