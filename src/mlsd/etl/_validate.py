"""Split raw batches into typed accepted rows and quarantined rows with reasons."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..formats import ERROR, LINE, RAW
from ..spec import ValidateSpec
from ._coerce import arrow_type, coerce_any, type_label
from ._schema import DataSchema
from ._spool import constant_text
from ._transform import Transformer

SOURCE, SOURCE_SHA, LOAD_ID = "_source", "_source_sha256", "_load_id"
PROVENANCE = (SOURCE, SOURCE_SHA, LINE, LOAD_ID)

Reasons = dict[int, list[tuple]]
"""Row index -> (column, rule, message) of every failed rule; rows that pass
have no entry."""

REASON_TYPE = pa.struct(
    [("column", pa.string()), ("rule", pa.string()), ("message", pa.string())]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        (SOURCE, pa.string()),
        (SOURCE_SHA, pa.string()),
        (LINE, pa.int64()),
        (LOAD_ID, pa.string()),
        ("raw", pa.string()),
        ("reasons", pa.list_(REASON_TYPE)),
    ]
)


def accepted_schema(schema: DataSchema) -> pa.Schema:
    """Arrow schema of stored rows: typed columns, then provenance."""
    return pa.schema(
        list(schema.arrow())
        + [
            (SOURCE, pa.string()),
            (SOURCE_SHA, pa.string()),
            (LINE, pa.int64()),
            (LOAD_ID, pa.string()),
        ]
    )


@dataclass
class Validated:
    accepted: pa.RecordBatch
    rejected: pa.RecordBatch


def _raw_text(raw: pa.RecordBatch, idx: np.ndarray) -> pa.Array:
    """The raw record of each row; for typed formats (no raw text), the
    rejected rows' values as JSON, so the quarantine always shows the record."""
    text = raw.column(RAW) if RAW in raw.schema.names else pa.nulls(raw.num_rows,
                                                                    pa.string())
    missing = [i for i in idx if not text[int(i)].is_valid]
    if not missing:
        return text
    from ..formats import to_text

    data = [c for c in raw.schema.names if c not in (LINE, RAW, ERROR)]
    values = text.to_pylist()
    rows = raw.select(data).take(pa.array(missing, pa.int64())).to_pylist()
    for i, row in zip(missing, rows, strict=True):
        values[int(i)] = to_text(row)
    return pa.array(values, pa.string())


def _beyond(vals: pa.Array, bound: float, *, below: bool) -> pa.Array:
    """``vals < bound`` (``below``) or ``vals > bound``, exactly for an integer
    column: Arrow casts the integers to doubles for a float bound and refuses
    those past 2**53 (an int64 column holding 2**53 + 1 stopped the
    validator), so the bound becomes an integer (v < 2.5 is v < 3, v > 2.5 is
    v > 2), and a bound past int64's range holds for every value or for none."""
    if not pa.types.is_integer(vals.type) or math.isnan(bound):
        return pc.less(vals, bound) if below else pc.greater(vals, bound)
    every, none = pc.is_valid(vals), pa.array([False] * len(vals))
    if math.isinf(bound):
        return every if (bound > 0) == below else none
    edge = math.ceil(bound) if below else math.floor(bound)
    if edge > 2**63 - 1:
        return every if below else none
    if edge < -(2**63):
        return none if below else every
    return pc.less(vals, edge) if below else pc.greater(vals, edge)


def _flag(reasons: Reasons, mask: np.ndarray, values: pa.Array, col: str,
          rule: str, text: str) -> None:
    """Add one reason to every row where ``mask`` is set, quoting the value."""
    if mask.any():
        shown = values.to_pylist()
        for i in np.flatnonzero(mask):
            reasons[i].append((col, rule, f"{col}: {_fmt(shown[i])} {text}"))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _shown(value: object, typ: object) -> object:
    """A value as the batch path quotes it (its Arrow column's Python value)."""
    if typ == "timestamp":
        return pa.array([value], arrow_type(typ)).to_pylist()[0]
    return value


def _fmt(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


class Validator:
    """Validates raw batches against a schema and the spec's constraints.

    Parameters
    ----------
    schema : DataSchema
        Column types; values are coerced one by one.
    rules : ValidateSpec
        required, ranges, allowed values, patterns, unique keys, SQL checks and
        null tokens.
    transform : Transformer, optional
        Cleaning applied while validating (text trimming and case, units) and
        derived columns added to accepted rows.
    unique_per_call : bool
        Check ``unique`` keys here, across the batches this validator sees. A
        load turns it off and settles repeated keys over its whole spool instead
        (faster, with DuckDB).
    """

    def __init__(self, *, schema: DataSchema, rules: ValidateSpec,
                 transform: Transformer | None = None,
                 unique_per_call: bool = True):
        self.schema = schema
        self.rules = rules
        self.transform = transform
        self.unique_per_call = unique_per_call

    def output_schema(self) -> pa.Schema:
        """Schema of accepted rows: typed columns, provenance, derived columns."""
        out = accepted_schema(self.schema)
        if self.transform is not None:
            for f in self.transform.derived_fields():
                out = out.append(f)
        return out

    def check_rules(self, where: str) -> None:
        """Refuse rules naming columns that the schema does not have."""
        from ..errors import SpecError

        cols = self.schema.columns
        for rule, names in (("required", self.rules.required),
                            ("ranges", list(self.rules.ranges)),
                            ("allowed", list(self.rules.allowed))):
            for name in names:
                if name not in cols:
                    raise SpecError(
                        f"validate.{rule}: column {name!r} is not in the schema of "
                        f"{where} (columns: {', '.join(cols)})"
                    )
        for name in [*self.rules.patterns, *self.rules.unique]:
            if name not in cols:
                raise SpecError(
                    f"validate: column {name!r} is not in the schema of {where} "
                    f"(columns: {', '.join(cols)})")
        for name in self.rules.patterns:
            if cols[name] != "string":
                raise SpecError(f"validate.patterns.{name}: column {name!r} is "
                                f"{type_label(cols[name])}, a pattern needs text")
        if self.rules.checks:
            self._check_sql(pa.Table.from_pylist([], schema=self.schema.arrow()))
        if self.transform is not None:
            self.transform.check(where)
        for name in self.rules.ranges:
            if cols[name] not in ("int64", "float64", "timestamp"):
                raise SpecError(
                    f"validate.ranges.{name}: column {name!r} is "
                    f"{type_label(cols[name])}, "
                    f"a range needs a number"
                )

    def typed(self, raw: pa.RecordBatch | pa.Table) -> tuple[dict[str, pa.Array],
                                                              Reasons]:
        """Coerce every column; return typed arrays and per-row reasons."""
        n = raw.num_rows
        # sparse: most rows pass, and a list per row would cost more than the
        # checks themselves
        reasons: Reasons = defaultdict(list)
        errors = raw.column(ERROR).to_pylist() if ERROR in raw.schema.names else [
            None] * n
        broken = np.array([e is not None for e in errors], dtype=bool)
        for i in np.flatnonzero(broken):
            rule = "encoding" if errors[i].startswith("bytes not valid") else "parse"
            reasons[i].append((None, rule, errors[i]))
        typed: dict[str, pa.Array] = {}
        type_bad: dict[str, np.ndarray] = {}
        tf = self.transform
        for col, typ in self.schema.columns.items():
            if col in raw.schema.names:
                values, bad = coerce_any(raw.column(col), typ,
                                         self.rules.null_values)
            else:
                values, bad = pa.nulls(n, arrow_type(typ)), np.zeros(n, dtype=bool)
            bad &= ~broken
            if bad.any():
                shown_src = raw.column(col) if col in raw.schema.names else values
                shown = shown_src.to_pylist()
                for i in np.flatnonzero(bad):
                    reasons[i].append(
                        (col, "type",
                         f"{col}: not a valid {type_label(typ)}: {_fmt(shown[i])}")
                    )
            if tf is not None and typ == "string":
                values = tf.clean_text(col, values)
            typed[col] = values
            type_bad[col] = bad
        if tf is not None and tf.units:
            tf.convert_units(typed, reasons)
        required = set(self.rules.required)
        for col, typ in self.schema.columns.items():
            values, bad = typed[col], type_bad[col]
            missing = ~np.asarray(values.is_valid().to_numpy(zero_copy_only=False))
            if col in required:
                for i in np.flatnonzero(missing & ~bad & ~broken):
                    reasons[i].append((col, "required", f"{col}: required but missing"))
            if col in self.rules.ranges:
                lo, hi = self.rules.ranges[col]
                vals = values
                scale = 1e6 if typ == "timestamp" else 1  # seconds -> microseconds
                if typ == "timestamp":
                    vals = pc.cast(values, pa.int64())
                out = np.zeros(n, dtype=bool)
                if lo is not None:
                    out |= np.asarray(_beyond(vals, lo * scale, below=True)
                                      .fill_null(False))
                if hi is not None:
                    out |= np.asarray(_beyond(vals, hi * scale, below=False)
                                      .fill_null(False))
                _flag(reasons, out, values, col, "range", f"outside [{lo}, {hi}]")
            if col in self.rules.allowed:
                allowed = self.rules.allowed[col]
                inset = pc.is_in(values, value_set=pa.array(allowed, values.type))
                # a missing value is the business of `required`, not `allowed`
                out = ~np.asarray(inset.fill_null(True)) & ~missing
                _flag(reasons, out, values, col, "allowed", "not in the allowed values")
        for col, pattern in self.rules.patterns.items():
            values = typed[col]
            ok = pc.match_substring_regex(values, pattern).fill_null(True)
            _flag(reasons, ~np.asarray(ok), values, col, "pattern",
                  f"does not match {pattern!r}")
        if self.rules.checks:
            failed = self._check_sql(pa.table(typed))
            for name, mask in failed.items():
                for i in np.flatnonzero(mask):
                    if any(r[1] in ("type", "parse", "encoding") for r in
                           reasons.get(i, ())):
                        continue  # the check saw a null where the value was bad
                    reasons[i].append((None, "check", f"check {name!r} is false: "
                                       f"{self.rules.checks[name]}"))
        if self.rules.unique and self.unique_per_call:
            self._check_unique(typed, reasons)
        return typed, reasons

    def row_path(self) -> bool:
        """Whether :meth:`check_row` can judge one row alone (no SQL check,
        text transform, unique key or struct column needs the batch path)."""
        return not (self.rules.checks or self.transform is not None
                    or (self.rules.unique and self.unique_per_call)
                    or any(isinstance(t, dict) for t in self.schema.columns.values()))

    def check_row(self, row: dict) -> tuple[dict, list[tuple[str | None, str, str]]]:
        """:meth:`typed` of one row whose values already have their logical
        types (what the service's request model gives: int, float, str, bool,
        datetime), without building arrays (the online path; only when
        :meth:`row_path`): the row as the batch path would type it (null tokens
        made None, times in UTC) and its reasons, in the batch path's order and
        words (a test holds the two equal)."""
        plan = self.__dict__.get("_row_plan")
        if plan is None:
            tokens = frozenset(self.rules.null_values)
            allowed = {c: frozenset(pa.array(v, arrow_type(self.schema.columns[c])
                                             ).to_pylist())
                       for c, v in self.rules.allowed.items()}
            plan = self._row_plan = (tokens, allowed, set(self.rules.required),
                                     max(map(len, tokens), default=0))
        tokens, allowed, required, longest = plan
        out: dict = {}
        reasons: list[tuple[str | None, str, str]] = []
        for col, typ in self.schema.columns.items():
            v = row.get(col)
            if v is not None and typ == "string" and tokens:
                if v and (v[0].isspace() or v[-1].isspace()):
                    # Arrow's trim decides, exactly as the batch path
                    if pc.utf8_trim_whitespace(pa.scalar(v)).as_py() in tokens:
                        v = None
                elif len(v) <= longest and v in tokens:
                    v = None
            elif v is not None and typ == "timestamp" and isinstance(v, datetime):
                v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
            out[col] = v
            if v is None:
                if col in required:
                    reasons.append((col, "required", f"{col}: required but missing"))
                continue
            if col in self.rules.ranges:
                lo, hi = self.rules.ranges[col]
                x = v
                if typ == "timestamp":
                    x = (v - _EPOCH) // _MICRO
                    lo = None if lo is None else lo * 1e6
                    hi = None if hi is None else hi * 1e6
                if (lo is not None and x < lo) or (hi is not None and x > hi):
                    lo, hi = self.rules.ranges[col]
                    reasons.append((col, "range", f"{col}: {_fmt(_shown(v, typ))} "
                                                  f"outside [{lo}, {hi}]"))
            if col in allowed and v not in allowed[col]:
                reasons.append((col, "allowed", f"{col}: {_fmt(_shown(v, typ))} not "
                                                f"in the allowed values"))
        for col, pattern in self.rules.patterns.items():
            v = out.get(col)
            if v is not None and not pc.match_substring_regex(
                    pa.array([v], pa.string()), pattern)[0].as_py():
                reasons.append((col, "pattern", f"{col}: {_fmt(v)} does not match "
                                                f"{pattern!r}"))
        return out, reasons

    def _check_sql(self, table: pa.Table) -> dict[str, np.ndarray]:
        """Evaluate the spec's SQL checks on typed rows with DuckDB.

        The expressions come from the spec; they run on an in-memory view of
        the batch, in a locked connection that can reach nothing else (no
        file, network or extension: :mod:`mlsd.engine._sandbox`).
        """
        import duckdb

        from ..engine._sandbox import locked_connection, why
        from ..errors import SpecError

        con = locked_connection({"batch": table}, threads=1)
        try:
            out = {}
            for name, expr in self.rules.checks.items():
                try:
                    res = con.sql(f"SELECT coalesce(({expr}), false) AS ok FROM batch"
                                  ).to_arrow_table()
                except duckdb.Error as err:
                    raise SpecError(f"validate.checks.{name}: the expression "
                                    f"{expr!r} fails: {why(err)}") from None
                out[name] = ~np.asarray(res.column("ok").to_numpy(
                    zero_copy_only=False), dtype=bool)
            return out
        finally:
            con.close()

    def _check_unique(self, typed: dict[str, pa.Array],
                      reasons: Reasons) -> None:
        """Flag rows whose unique key was already seen in this load."""
        cols = self.rules.unique
        if not hasattr(self, "_seen"):
            self._seen: set[tuple] = set()  # keys of this load so far
        seen = self._seen
        keys = zip(*[typed[c].to_pylist() for c in cols], strict=True)
        label = ", ".join(cols)
        for i, key in enumerate(keys):
            if any(v is None for v in key) or i in reasons:
                # a missing key part is the business of `required`, and a row
                # rejected for another reason does not claim its key
                continue
            if key in seen:
                reasons[i].append((cols[0], "unique",
                                   f"{label}: {_fmt(key if len(key) > 1 else key[0])}"
                                   f" repeats a row already loaded"))
            else:
                seen.add(key)

    def validate(self, raw: pa.RecordBatch, *, source: str, sha256: str,
                 load_id: str) -> Validated:
        """Split one raw batch into accepted (typed) and rejected rows."""
        n = raw.num_rows
        typed, reasons = self.typed(raw)
        bad = np.zeros(n, dtype=bool)
        bad[[i for i, r in reasons.items() if r]] = True
        good = pa.array(~bad)
        prov = [
            constant_text(source, n),
            constant_text(sha256, n),
            raw.column(LINE),
            constant_text(load_id, n),
        ]
        acc_cols = [typed[c] for c in self.schema.columns] + prov
        accepted = pa.RecordBatch.from_arrays(
            acc_cols, schema=accepted_schema(self.schema)).filter(good)
        if self.transform is not None and self.transform.derive:
            accepted = self.transform.add_derived(accepted, self.schema)
        idx = np.flatnonzero(bad)
        rej = pa.RecordBatch.from_arrays(
            prov + [_raw_text(raw, idx)], names=[*PROVENANCE, "raw"]
        ).take(pa.array(idx, pa.int64()))
        reason_col = pa.array(
            [[{"column": c, "rule": r, "message": m} for c, r, m in reasons[i]]
             for i in idx],
            pa.list_(REASON_TYPE),
        )
        rejected = pa.RecordBatch.from_arrays(
            [rej.column(SOURCE), rej.column(SOURCE_SHA), rej.column(LINE),
             rej.column(LOAD_ID), rej.column("raw"), reason_col],
            schema=QUARANTINE_SCHEMA,
        )
        return Validated(accepted, rejected)
