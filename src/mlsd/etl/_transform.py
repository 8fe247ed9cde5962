"""Transform while loading: clean text, convert units, derive columns, dedupe."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SpecError
from ..spec import TransformSpec
from ._schema import DataSchema
from ._spool import Spool
from ._spool import quote_identifier as _quote


class Transformer:
    """Applies the spec's ``transform`` section to a source's rows.

    Text cleaning and unit conversion run inside validation (so constraints see
    clean values); derived columns are added to accepted rows; deduplication runs
    over the whole load before it is committed.
    """

    def __init__(self, *, spec: TransformSpec, schema: DataSchema):
        self.spec = spec
        self.schema = schema

    @property
    def units(self) -> bool:
        return bool(self.spec.units)

    @property
    def derive(self) -> bool:
        return bool(self.spec.derive)

    def check(self, where: str) -> None:
        """Refuse transforms naming columns the schema lacks or cannot take."""
        cols = self.schema.columns
        named = [*(self.spec.trim if isinstance(self.spec.trim, list) else []),
                 *self.spec.lower, *self.spec.upper]
        for col in named:
            if cols.get(col) != "string":
                raise SpecError(f"transform: {col!r} is not a text column of {where}")
        for col, u in self.spec.units.items():
            if cols.get(col) != "float64":
                raise SpecError(f"transform.units.{col}: needs a float64 column of "
                                f"{where} (schemas/...yaml)")
            if u.unit_column not in cols:
                raise SpecError(f"transform.units.{col}.unit_column: "
                                f"{u.unit_column!r} is not a column of {where}")
        if self.spec.dedupe:
            for col in [*self.spec.dedupe.key, *([self.spec.dedupe.keep_latest_by]
                                                 if self.spec.dedupe.keep_latest_by
                                                 else [])]:
                if col not in cols:
                    raise SpecError(f"transform.dedupe: {col!r} is not a column of "
                                    f"{where}")
        self.derived_fields()

    # inside validation ------------------------------------------------------------
    def clean_text(self, col: str, values: pa.Array) -> pa.Array:
        trim = self.spec.trim
        if trim is True or (isinstance(trim, list) and col in trim):
            values = pc.utf8_trim_whitespace(values)
        if col in self.spec.lower:
            values = pc.utf8_lower(values)
        if col in self.spec.upper:
            values = pc.utf8_upper(values)
        return values

    def convert_units(self, typed: dict[str, pa.Array],
                      reasons: dict[int, list[tuple]]) -> None:
        for col, u in self.spec.units.items():
            x = np.asarray(pc.fill_null(typed[col], np.nan), dtype=float)
            units = typed[u.unit_column].to_pylist()
            out = np.full(len(x), np.nan)
            for i, (v, unit) in enumerate(zip(x, units, strict=True)):
                if np.isnan(v):
                    continue
                factor = u.factors.get(unit) if unit is not None else None
                if factor is None:
                    reasons[i].append((col, "unit", f"{col}: unknown unit {unit!r} "
                                       f"(known: {', '.join(u.factors)})"))
                    continue
                out[i] = v * factor
            typed[col] = pa.array(out, pa.float64(), mask=np.isnan(out))
            typed[u.unit_column] = pa.array(
                [None if x_ is None else u.to for x_ in units], pa.string())

    # after validation -----------------------------------------------------------
    def derived_fields(self) -> list[pa.Field]:
        """The derived columns and their types (checked on an empty table)."""
        if not self.spec.derive:
            return []
        empty = pa.Table.from_pylist([], schema=self.schema.arrow())
        out = self._derive(empty)
        return list(out.schema)

    def _derive(self, table: pa.Table) -> pa.Table:
        from ..engine._sandbox import locked_connection, why

        con = locked_connection({"batch": table}, threads=1)
        try:
            exprs = ", ".join(f"({expr}) AS {_quote(name)}"
                              for name, expr in self.spec.derive.items())
            try:
                return con.sql(f"SELECT {exprs} FROM batch").to_arrow_table()
            except duckdb.Error as err:
                raise SpecError(f"transform.derive: an expression fails: {why(err)}"
                                ) from None
        finally:
            con.close()

    def add_derived(self, batch: pa.RecordBatch, schema: DataSchema
                    ) -> pa.RecordBatch:
        table = pa.Table.from_batches([batch])
        derived = self._derive(table.select(list(schema.columns)))
        for f in self.derived_fields():
            col = derived.column(f.name)
            table = table.append_column(f, col.cast(f.type))
        return table.combine_chunks().to_batches()[0] if table.num_rows else \
            pa.RecordBatch.from_pylist([], schema=table.schema)

    def dedupe(self, spool: Spool, load_id: str) -> int:
        """Keep the latest row per key in a spooled load; move the others to the
        rejected rows with the rule ``dedupe``. Returns how many were moved.
        Ties (or no ``keep_latest_by``) go to the row read last."""
        d = self.spec.dedupe
        if d is None:
            return 0
        first = (f"{_quote(d.keep_latest_by)} DESC NULLS LAST, " if d.keep_latest_by
                 else "") + "__batch DESC, __row DESC"
        return spool.move_repeats(d.key, first=first, rule="dedupe",
                                  message="a later row with the same key was kept",
                                  load_id=load_id)

    def narrow_columns(self) -> list[str]:
        """Columns the dedupe needs kept in memory during a load."""
        d = self.spec.dedupe
        if d is None:
            return []
        return [*d.key, *([d.keep_latest_by] if d.keep_latest_by else [])]
