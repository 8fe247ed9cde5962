"""Text to typed Arrow arrays, value by value, vectorised with pyarrow compute.

Each coercion returns the typed array and a mask of the values that were present
but did not parse, so validation can reject exactly those rows with the value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

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
# ISO 8601 as Arrow's own parser takes it (hours alone, and zones as +HH, +HHMM
# or +HH:MM), so that its fast cast never accepts what this refuses
TS_RE = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,9})?)?)?)?"
    r"(Z|z|[+-]\d{2}(:?\d{2})?)?$"
)
TZ_RE = r"(Z|z|[+-]\d{2}(:?\d{2})?)$"
# A column's logical type: a scalar type name, or for a nested object kept as a
# struct, a mapping of its field names to their own types (nesting allowed).
TypeName = str | dict[str, Any]
TRUE = ("true", "t", "yes", "y", "1")
FALSE = ("false", "f", "no", "n", "0")
BOOL_WORDS = ("true", "false", "yes", "no")  # what inference takes as boolean


def arrow_type(type_name: TypeName) -> pa.DataType:
    """The Arrow type of a logical type (a mapping is a struct)."""
    if isinstance(type_name, dict):
        return pa.struct([pa.field(k, arrow_type(v)) for k, v in type_name.items()])
    return ARROW_TYPES[type_name]


def type_label(type_name: TypeName) -> str:
    """A logical type as people read it: ``struct{city: string, zip: int64}``."""
    if isinstance(type_name, dict):
        return "struct{" + ", ".join(f"{k}: {type_label(v)}"
                                     for k, v in type_name.items()) + "}"
    return type_name


def _mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def nullify(raw: pa.Array, null_values: list[str]) -> pa.Array:
    """Raw text with the null tokens (compared after trimming) made null."""
    if not null_values:
        return raw
    tokens = pa.array(null_values, pa.string())
    if _needs_trim(raw):
        is_null = pc.is_in(pc.utf8_trim_whitespace(raw), value_set=tokens)
    else:
        # untrimmed, a token is no longer than the longest one: only such
        # short values are looked up (most columns have few or none)
        offsets, _ = _string_buffers(raw)
        short = np.flatnonzero(np.diff(offsets) <= max(
            len(t.encode()) for t in null_values))
        if not len(short):
            return raw
        found = _mask(pc.is_in(raw.take(pa.array(short)), value_set=tokens))
        if not found.any():
            return raw
        mask = np.zeros(len(raw), dtype=bool)
        mask[short[found]] = True
        is_null = pa.array(mask)
    if not pc.any(is_null).as_py():
        return raw
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


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's value offsets and data bytes, without copying."""
    if len(arr) == 0 or arr.buffers()[2] is None:
        return np.zeros(len(arr) + 1, dtype=np.int32), np.zeros(0, dtype=np.uint8)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32,
                            count=len(arr) + 1, offset=arr.offset * 4)
    return offsets, np.frombuffer(arr.buffers()[2], dtype=np.uint8)


def _data_bytes(arr: pa.Array) -> np.ndarray:
    """The bytes of a string array's values (its slice of the data buffer)."""
    offsets, data = _string_buffers(arr)
    return data[offsets[0]:offsets[-1]]


def _needs_trim(arr: pa.Array) -> bool:
    """Whether trimming could change a value: some value starts or ends with
    whitespace, or with a non-ASCII byte (Unicode has spaces of its own). Only
    the first and last byte of each value are read."""
    offsets, data = _string_buffers(arr)
    values = data[offsets[0]:offsets[-1]]
    if not ((values <= 32) | (values >= 128)).any():
        return False  # no such byte anywhere: one pass, no gathering
    starts, ends = offsets[:-1], offsets[1:]
    full = ends > starts
    if not full.any():
        return False
    ends_bytes = np.concatenate([data[starts[full]], data[ends[full] - 1]])
    return bool(((ends_bytes <= 32) | (ends_bytes >= 128)).any())


def _fast_cast(text: pa.Array, type_name: str) -> pa.Array | None:
    """Arrow's own cast of a whole column, when it provably agrees with the
    rules below (ints: no hex; floats: no nan/inf; timestamps: every value has
    a zone); None when the column needs the value-by-value path."""
    data = _data_bytes(text) if type_name == "int64" else None
    if data is not None and ((data == ord("x")) | (data == ord("X"))).any():
        return None  # Arrow reads 0x10 as 16; the rule says it is no integer
    try:
        typed = pc.cast(text, ARROW_TYPES[type_name])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if type_name == "float64" and pc.all(pc.is_finite(typed)).as_py() not in (
            True, None):
        return None  # nan and inf parse, but the rule takes them as bad
    return typed


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
    text = pc.utf8_trim_whitespace(raw) if _needs_trim(raw) else raw
    if type_name in ("int64", "float64", "timestamp") and (
            fast := _fast_cast(text, type_name)) is not None:
        return fast, np.zeros(len(raw), dtype=bool)
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
        if type_name == "int64" and (_data_bytes(kept) == ord("+")).any():
            kept = pc.replace_substring_regex(kept, r"^\+", "")  # Arrow wants none
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


def _objects(values: list[str | None]) -> tuple[list[dict | None], np.ndarray]:
    """JSON texts parsed to objects; bad where a value is not a JSON object."""
    objs: list[dict | None] = []
    bad = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        obj = None
        if v is not None:
            try:
                obj = json.loads(v)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                obj, bad[i] = None, True
        objs.append(obj)
    return objs, bad


def coerce_struct(raw: pa.Array, fields: dict[str, Any], null_values: list[str]
                  ) -> tuple[pa.Array, np.ndarray]:
    """JSON objects (as text) to an Arrow struct, each field coerced by its type.

    A value that is not an object, has a field the type does not name (kept
    data must not be dropped silently) or has a field that does not parse is
    bad, and the whole value is null.
    """
    from ..formats import to_text

    objs, bad = _objects(raw.to_pylist())
    known = set(fields)
    for i, obj in enumerate(objs):
        if obj is not None and not known.issuperset(obj):
            objs[i], bad[i] = None, True
    children = []
    for name, typ in fields.items():
        col = pa.array([None if o is None else to_text(o.get(name)) for o in objs],
                       pa.string())
        typed, field_bad = coerce_any(col, typ, null_values)
        bad |= field_bad
        children.append(typed)
    missing = np.array([o is None for o in objs], dtype=bool) | bad
    struct = pa.StructArray.from_arrays(
        children, fields=[pa.field(k, arrow_type(v)) for k, v in fields.items()],
        mask=pa.array(missing))
    return struct, bad


def infer_struct(raw: pa.Array, threshold: float, null_values: list[str]
                 ) -> dict[str, Any] | None:
    """The struct type of a column of JSON objects (as text), or None when fewer
    than ``threshold`` of its present values are objects. Fields are the union
    of the sampled objects' keys, in order of appearance, each typed by a vote."""
    from ..formats import to_text

    values = [v for v in raw.to_pylist() if v is not None]
    if not values:
        return None
    objs, bad = _objects(values)
    if 1 - bad.mean() < threshold:
        return None
    keys = dict.fromkeys(k for o in objs if o is not None for k in o)
    if not keys:
        return None
    out: dict[str, Any] = {}
    for k in keys:
        col = pa.array([None if o is None else to_text(o.get(k)) for o in objs],
                       pa.string())
        out[k] = infer_type_any(col, threshold, null_values, structs=True)
    return out


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


def coerce_any(arr: pa.Array, type_name: TypeName, null_values: list[str]
               ) -> tuple[pa.Array, np.ndarray]:
    """Coerce a raw column, text or already typed, to ``type_name``.

    Typed values that convert without loss (an int32 to int64, a naive timestamp
    to UTC, a date to a timestamp) are kept as they are; anything else goes
    through text, so a value that does not fit is flagged, never silently changed.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    target = arrow_type(type_name)
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(n, target), np.zeros(n, dtype=bool)
    if isinstance(type_name, dict):
        if t == target:
            return arr, np.zeros(n, dtype=bool)
        return coerce_struct(nullify(as_text(arr), null_values), type_name,
                             null_values)
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


def infer_type_any(arr: pa.Array, threshold: float, null_values: list[str], *,
                   structs: bool = False) -> TypeName:
    """The logical type of a raw column: from its Arrow type when it has one.

    With ``structs``, a column of JSON objects (or an Arrow struct) gets a
    struct type; otherwise nested values stay JSON text (``string``).
    """
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        text = nullify(pc.cast(arr, pa.string()), null_values)
        if structs and (struct := infer_struct(text, threshold, null_values)):
            return struct
        return infer_type(text, threshold)
    return logical_type(t, structs=structs)


def logical_type(t: pa.DataType, *, structs: bool = True) -> TypeName:
    """The logical column type of an Arrow type (a struct's, with ``structs``)."""
    if structs and pa.types.is_struct(t) and t.num_fields:
        return {f.name: logical_type(f.type) for f in t}
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float64"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    return "string"
