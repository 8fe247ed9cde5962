"""Text to typed Arrow arrays, value by value, vectorised with pyarrow compute.

Each coercion returns the typed array and a mask of the values that were present
but did not parse, so validation can reject exactly those rows with the value.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

INT_RE = r"^[+-]?\d{1,19}$"
LONG_INT_RE = r"^[+-]?\d{19}$"  # may overflow int64: checked value by value
FLOAT_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
TS_RE = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
TZ_RE = r"(Z|z|[+-]\d{2}:?\d{2})$"
TRUE = ("true", "t", "yes", "y", "1")
FALSE = ("false", "f", "no", "n", "0")
BOOL_WORDS = ("true", "false", "yes", "no")  # what inference takes as boolean


def _mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def nullify(raw: pa.Array, null_values: list[str]) -> pa.Array:
    """Raw text with the null tokens (compared after trimming) made null."""
    trimmed = pc.utf8_trim_whitespace(raw)
    is_null = pc.is_in(trimmed, value_set=pa.array(null_values, pa.string()))
    return pc.if_else(is_null.fill_null(False), pa.scalar(None, pa.string()), raw)


def _parse_ts_slow(values: list[str | None]) -> tuple[list, list[bool]]:
    out, bad = [], []
    for v in values:
        if v is None:
            out.append(None)
            bad.append(False)
            continue
        try:
            ts = datetime.fromisoformat(v.strip().replace("z", "Z"))
        except ValueError:
            out.append(None)
            bad.append(True)
            continue
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        out.append(ts)
        bad.append(False)
    return out, bad


def coerce(raw: pa.Array, type_name: str) -> tuple[pa.Array, np.ndarray]:
    """Coerce a text array (nulls already applied) to ``type_name``.

    Returns
    -------
    (typed, bad)
        ``typed`` has nulls where the value was missing or did not parse; ``bad``
        is True where a value was present but did not parse.
    """
    target = ARROW_TYPES[type_name]
    if type_name == "string":
        return raw, np.zeros(len(raw), dtype=bool)
    text = pc.utf8_trim_whitespace(raw)
    present = _mask(pc.is_valid(text))
    if type_name in ("int64", "float64"):
        ok = _mask(pc.match_substring_regex(text, INT_RE if type_name == "int64"
                                            else FLOAT_RE))
        if type_name == "int64":
            long = _mask(pc.match_substring_regex(text, LONG_INT_RE))
            if long.any():
                values = text.to_pylist()
                for i in np.flatnonzero(long):
                    if not -(2**63) <= int(values[i]) < 2**63:
                        ok[i] = False
        kept = pc.if_else(pa.array(ok), text, pa.scalar(None, pa.string()))
        typed = pc.cast(kept, target)
        return typed, present & ~ok
    if type_name == "bool":
        low = pc.utf8_lower(text)
        is_t = _mask(pc.is_in(low, value_set=pa.array(TRUE)))
        is_f = _mask(pc.is_in(low, value_set=pa.array(FALSE)))
        ok = is_t | is_f
        typed = pa.array(np.where(ok, is_t, False), pa.bool_(), mask=~ok)
        return typed, present & ~ok
    # timestamp: ISO 8601; a zone suffix is honoured, a naive value is UTC
    ok = _mask(pc.match_substring_regex(text, TS_RE))
    has_tz = _mask(pc.match_substring_regex(text, TZ_RE)) & ok
    naive = ok & ~has_tz
    try:
        null = pa.scalar(None, pa.string())
        aware_vals = pc.cast(pc.if_else(pa.array(has_tz), text, null), target)
        naive_vals = pc.cast(
            pc.cast(pc.if_else(pa.array(naive), text, null), pa.timestamp("us")),
            target,
        )
        typed = pc.if_else(pa.array(has_tz), aware_vals, naive_vals)
        return typed, present & ~ok
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Written by hand: Arrow's parser refuses a whole array for one odd (but
        # valid ISO) value such as a date without time; parse value by value.
        vals, bad = _parse_ts_slow(text.to_pylist())
        return pa.array(vals, target), np.asarray(bad, dtype=bool)


def infer_type(raw: pa.Array, threshold: float) -> str:
    """Vote for a column's type on a sample of text values (nulls applied).

    The most specific of bool, int64, float64, timestamp that at least
    ``threshold`` of the present values parse as wins, else string. One bad number
    among many good ones does not turn a numeric column into text.
    """
    text = pc.utf8_trim_whitespace(raw.drop_null())
    n = len(text)
    if n == 0:
        return "string"

    def share(pattern: str) -> float:
        return float(np.sum(_mask(pc.match_substring_regex(text, pattern)))) / n

    low = pc.utf8_lower(text)
    if np.sum(_mask(pc.is_in(low, value_set=pa.array(BOOL_WORDS)))) / n >= threshold:
        return "bool"
    if share(INT_RE) >= threshold:
        return "int64"
    if share(FLOAT_RE) >= threshold:
        return "float64"
    if share(TS_RE) >= threshold:
        return "timestamp"
    return "string"


def _nested(t: pa.DataType) -> bool:
    return (pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_map(t)
            or pa.types.is_large_list(t))


def as_text(arr: pa.Array) -> pa.Array:
    """Any array as text (nested values as JSON), for coercion from text."""
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_large_string(arr.type) or pa.types.is_dictionary(arr.type):
        return pc.cast(arr, pa.string())
    if _nested(arr.type) or pa.types.is_binary(arr.type):
        from ..formats import to_text

        return pa.array([to_text(v) for v in arr.to_pylist()], pa.string())
    if pa.types.is_boolean(arr.type):
        return pc.if_else(arr, "true", "false")
    return pc.cast(arr, pa.string())


def coerce_any(arr: pa.Array, type_name: str, null_values: list[str]
               ) -> tuple[pa.Array, np.ndarray]:
    """Coerce a raw column, text or already typed, to ``type_name``.

    Typed values that convert without loss (an int32 to int64, a naive timestamp
    to UTC, a date to a timestamp) are kept as they are; anything else goes
    through text, so a value that does not fit is flagged, never silently changed.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    target = ARROW_TYPES[type_name]
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(n, target), np.zeros(n, dtype=bool)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return coerce(nullify(pc.cast(arr, pa.string()), null_values), type_name)
    if t == target:
        return arr, np.zeros(n, dtype=bool)
    ok = (
        (type_name == "int64" and pa.types.is_integer(t))
        or (type_name == "float64" and (pa.types.is_integer(t)
                                        or pa.types.is_floating(t)
                                        or pa.types.is_decimal(t)))
        or (type_name == "timestamp" and (pa.types.is_timestamp(t)
                                          or pa.types.is_date(t)))
    )
    if ok:
        try:
            if pa.types.is_date(t):
                arr = pc.cast(arr, pa.timestamp("us"))
            return pc.cast(arr, target, safe=True), np.zeros(n, dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # out of range for the target: decide value by value, via text
    if type_name == "int64" and pa.types.is_floating(t):
        # ints that pandas turned into floats (because of a NaN) come back whole;
        # a fractional or out-of-range value is flagged
        x = np.asarray(pc.fill_null(pc.cast(arr, pa.float64()), 0.0))
        present = np.asarray(arr.is_valid())
        whole = np.isfinite(x) & (np.floor(x) == x) & (np.abs(x) < 2.0**63)
        bad = present & ~whole
        ints = np.where(whole, x, 0).astype(np.int64)
        return pa.array(ints, pa.int64(), mask=~(present & whole)), bad
    if type_name == "string":
        return as_text(arr), np.zeros(n, dtype=bool)
    return coerce(nullify(as_text(arr), null_values), type_name)


def infer_type_any(arr: pa.Array, threshold: float, null_values: list[str]) -> str:
    """The logical type of a raw column: from its Arrow type when it has one."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return infer_type(nullify(pc.cast(arr, pa.string()), null_values), threshold)
    return logical_type(t)


def logical_type(t: pa.DataType) -> str:
    """The logical column type of an Arrow type."""
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float64"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    return "string"
