"""Deterministic train / valid / test splits that stay put as rows are appended.

Random, stratified and group splits place a row by a seeded MurmurHash3 of its key
(or group), not by its position: the same row lands in the same split whatever the
file order, and rows added later do not move earlier ones. A stratified split
gives each class its exact share at first, by per-class cut points on that hash,
and records the cut points; the time strategies record their cut-off times. A
later run with the same split settings places rows by the recorded cuts, so rows
appended since land beside the earlier ones without moving any of them (the
newest rows of a time split go to test). Exact duplicate rows (every column
equal but the key and provenance) follow the first of them, so none sits on both
sides of a cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from ..spec import SplitSpec

if TYPE_CHECKING:  # numpy and pyarrow load when a split is made
    import numpy as np
    import pyarrow as pa

TRAIN, VALID, TEST = "train", "valid", "test"
GAP, LATE, UNSAMPLED = "gap", "late", "unsampled"
WEAK = "weakly_labelled"
"""A row labelled by a labeling function's label model or by a model (a
pseudo-label) that the split placed in valid or test: left out, since weak
labels train and never evaluate (a test scored against them would measure
agreement with the label model, not with the truth)."""
WEAK_KINDS = ("function", "model")
"""Rows in no split: inside a time gap, of a group placed in an earlier split
but dated after that split's end (strategy time+group), or of the train side
but not drawn by the spec's sample."""
SPLIT = "_split"


def stable_unit(values: list, seed: int) -> np.ndarray:
    """Map values to [0, 1) with a seeded MurmurHash3 (stable across processes)."""
    import mmh3
    import numpy as np

    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        out[i] = mmh3.hash("\x00" if v is None else str(v), seed, signed=False)
    return out / 2.0**32


@dataclass
class SplitResult:
    """Each row's split, the cuts that placed it, and how.

    ``cuts`` is plain JSON: per-class hash cut points (stratified) or cut-off
    times (time strategies); ``reused`` says they were recorded by an earlier
    split; ``duplicates`` counts rows placed with an earlier exact duplicate.
    """

    labels: np.ndarray
    cuts: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    duplicates: int = 0


def _row_ids(table: pa.Table, key: str | None) -> list:
    if key:
        if key not in table.column_names:
            raise DataError(f"split: key column {key!r} is not in the data")
        ids = table.column(key).to_pylist()
        if None in ids:
            raise DataError(f"split: key column {key!r} has missing values")
        return ids
    if "_source" not in table.column_names:
        # no key and no provenance: the row position is the only identity
        return list(range(table.num_rows))
    src = table.column("_source").to_pylist()
    line = table.column("_line").to_pylist()
    return [f"{s}:{n}" for s, n in zip(src, line, strict=True)]


def duplicate_leaders(table: pa.Table, key: str | None) -> np.ndarray:
    """For every row, the position of the first row with the same content
    (every column but the key, provenance and ``_row``); itself when unique."""
    import numpy as np

    from ..engine._sandbox import locked_connection
    from ..etl import PROVENANCE

    skip = {*PROVENANCE, "_row", *([key] if key else [])}
    cols = [c for c in table.column_names if c not in skip]
    if not cols or table.num_rows == 0:
        return np.arange(table.num_rows)
    con = locked_connection({"t": table.select(cols)}, threads=1)
    try:
        quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
        h = con.sql(f"SELECT hash({quoted}) AS h FROM t").to_arrow_table()
    finally:
        con.close()
    h = h.column("h").to_numpy()
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    return first[inverse]


def _by_unit(u: np.ndarray, test: np.ndarray | float, valid_end: np.ndarray | float
             ) -> np.ndarray:
    import numpy as np

    return np.where(u < test, TEST, np.where(u < valid_end, VALID, TRAIN))


def _cut(sorted_u: np.ndarray, k: int, nominal: float) -> float:
    """A cut point with exactly ``k`` of ``sorted_u`` below it, as close to
    ``nominal`` as that allows (rows to come are then placed near the nominal
    share)."""
    import numpy as np

    lo = -np.inf if k == 0 else float(np.nextafter(sorted_u[k - 1], np.inf))
    hi = np.inf if k == len(sorted_u) else float(sorted_u[k])
    return float(min(max(nominal, lo), hi))


def _stratified(u: np.ndarray, labels: list, spec: SplitSpec,
                recorded: dict[str, list[float]] | None
                ) -> tuple[np.ndarray, dict[str, list[float]]]:
    import numpy as np

    lab = np.array(["\x00" if v is None else str(v) for v in labels], dtype=object)
    cuts = dict(recorded or {})
    test_at, valid_at = np.empty(len(u)), np.empty(len(u))
    for c in sorted(set(lab.tolist())):
        idx = np.flatnonzero(lab == c)
        if c not in cuts:
            s = np.sort(u[idx])
            n_test = int(round(spec.test * len(idx)))
            n_valid = int(round(spec.valid * len(idx)))
            cuts[c] = [_cut(s, n_test, spec.test),
                       _cut(s, n_test + n_valid, spec.test + spec.valid)]
        test_at[idx], valid_at[idx] = cuts[c]
    return _by_unit(u, test_at, valid_at), cuts


def _time_values(table: pa.Table, col: str) -> np.ndarray:
    """The time column as numbers: microseconds since the epoch for
    timestamps, the values themselves for numbers."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if col not in table.column_names:
        raise DataError(f"split.time: column {col!r} is not in the data")
    times = table.column(col)
    if times.null_count:
        raise DataError(
            f"split.time: column {col!r} has {times.null_count} missing values; make "
            f"it required in `validate.required` so such rows are quarantined")
    if pa.types.is_timestamp(times.type):
        return pc.cast(pc.cast(times, pa.timestamp("us", times.type.tz)), pa.int64()
                       ).to_numpy().astype(np.float64)
    return np.asarray(times.to_numpy(), dtype=np.float64)


def _time_cuts(t: np.ndarray, spec: SplitSpec, gap: float, col: str
               ) -> dict[str, float]:
    """Cut-off times: test from ``test_start``, valid from ``valid_start`` to
    ``gap`` before test, train until ``gap`` before valid. Rows of one time
    value stay on one side of a cut."""
    import numpy as np

    ts = np.sort(t)
    n = len(ts)
    n_test = int(round(spec.test * n))
    n_valid = int(round(spec.valid * n))
    test_pos = _tie_start(ts, n - n_test)
    if 0 < test_pos < n:
        test_start = float(ts[test_pos])
        before = int(np.searchsorted(ts, test_start - gap, side="left"))
        valid_pos = _tie_start(ts, before - n_valid)
        if 0 < valid_pos < before and ts[valid_pos] - gap > ts[0]:
            return {"valid_start": float(ts[valid_pos]), "test_start": test_start}
    distinct = len(np.unique(ts))
    raise DataError(
        f"split.time: column {col!r} has {distinct} distinct value(s)"
        + (f" over a span of {ts[-1] - ts[0]:g}" if gap else "")
        + "; rows with one time value stay in one split"
        + (f" and {spec.gap} gaps lie between splits" if gap else "")
        + f", so it cannot make train, valid and test (fractions "
        f"{1 - spec.test - spec.valid:.2f}, {spec.valid}, {spec.test}); use a finer "
        f"time column, a shorter gap or another strategy")


def _by_time(t: np.ndarray, cuts: dict[str, float], gap: float) -> np.ndarray:
    import numpy as np

    vs, ts = cuts["valid_start"], cuts["test_start"]
    return np.select([t >= ts, (t >= vs) & (t < ts - gap), t < vs - gap],
                     [TEST, VALID, TRAIN], GAP)


def _gap_units(table: pa.Table, spec: SplitSpec) -> float:
    import pyarrow as pa

    if not spec.gap:
        return 0.0
    if pa.types.is_timestamp(table.column(spec.time).type):
        return spec.gap_seconds * 1e6  # the time values are microseconds
    return spec.gap_seconds


def split_rows(table: pa.Table, spec: SplitSpec, *, target: str, seed: int,
               key: str | None = None, cuts: dict[str, Any] | None = None,
               units: np.ndarray | None = None, leaders: np.ndarray | None = None
               ) -> SplitResult:
    """Place every row of ``table`` in train, valid or test (or in no split:
    ``gap``, ``late``), by a deterministic strategy.

    Parameters
    ----------
    table : pa.Table
        The training table, with the key, time, group and target columns.
    spec : SplitSpec
        Strategy and fractions; ``valid`` is carved from the training side.
    target : str
        Label column (stratified splits keep its class shares in every split).
    seed : int
        Seed of the hash; the same seed gives the same split.
    key : str, optional
        Row key; without one, rows are identified by source file and line.
    cuts : dict, optional
        The cuts an earlier split with the same settings recorded
        (``SplitResult.cuts``); rows are placed by them, so none moves.
    units, leaders : np.ndarray, optional
        What an engine computed over the whole table (``engine: spark``): each
        row's :func:`stable_unit` (of its id; of its group for a group split)
        and :func:`duplicate_leaders`; ``table`` then needs only the target
        and time columns.
    """
    import numpy as np

    n = table.num_rows
    if n < 10:
        raise DataError(f"split: only {n} usable rows; need at least 10 to split")
    cuts = dict(cuts or {})
    reused = bool(cuts)
    if spec.strategy in ("random", "stratified"):
        u = stable_unit(_row_ids(table, key), seed) if units is None else units
        if leaders is None:
            leaders = duplicate_leaders(table, key)
        u = u[leaders]
        dups = int((leaders != np.arange(n)).sum())
        if spec.strategy == "random":
            return SplitResult(_by_unit(u, spec.test, spec.test + spec.valid),
                               duplicates=dups)
        labels, classes = _stratified(u, table.column(target).to_pylist(), spec,
                                      cuts.get("classes"))
        reused = reused and set(classes) == set(cuts.get("classes", {}))
        return SplitResult(labels, {"classes": classes}, reused, dups)
    if spec.strategy == "group":
        col = spec.group
        if units is None and col not in table.column_names:
            raise DataError(f"split.group: column {col!r} is not in the data")
        if units is None:
            units = stable_unit(table.column(col).to_pylist(), seed)
        return SplitResult(_by_unit(units, spec.test, spec.test + spec.valid))
    t = _time_values(table, spec.time)
    gap = _gap_units(table, spec)
    if spec.strategy == "time":
        cuts = cuts or _time_cuts(t, spec, gap, spec.time)
        return SplitResult(_by_time(t, cuts, gap), cuts, reused)
    # time+group: a group belongs where its first row falls; rows of a group
    # placed earlier that come after its split ends are left out, so every
    # train row precedes every valid row, which precede every test row
    col = spec.group
    if col not in table.column_names:
        raise DataError(f"split.group: column {col!r} is not in the data")
    groups = np.array(["\x00" if g is None else str(g)
                       for g in table.column(col).to_pylist()], dtype=object)
    _, inverse = np.unique(groups, return_inverse=True)
    first = np.full(inverse.max() + 1, np.inf)
    np.minimum.at(first, inverse, t)
    f = first[inverse]
    cuts = cuts or _time_cuts(f, spec, gap, spec.time)
    by_group = _by_time(f, cuts, gap)
    by_row = _by_time(t, cuts, gap)
    order = {TRAIN: 0, VALID: 1, TEST: 2, GAP: 3}
    later = np.array([order[b] > order[g] for g, b in zip(by_group, by_row,
                                                          strict=True)], dtype=bool)
    labels = np.where((by_group != GAP) & later, LATE, by_group)
    return SplitResult(labels, cuts, reused)


def assign_splits(table: pa.Table, spec: SplitSpec, *, target: str, seed: int,
                  key: str | None = None) -> np.ndarray:
    """The split name of every row of ``table`` (see :func:`split_rows`)."""
    return split_rows(table, spec, target=target, seed=seed, key=key).labels


def _tie_start(sorted_times, at: int) -> int:
    """The first position of the run of equal times that holds position
    ``at``: a cut there keeps every tie on the later side."""
    import numpy as np

    if at <= 0:
        return 0
    if at >= len(sorted_times):
        return len(sorted_times)
    return int(np.searchsorted(sorted_times, sorted_times[at], side="left"))
