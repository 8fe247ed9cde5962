"""Deterministic train / valid / test splits.

Random, stratified and group splits place a row by a seeded MurmurHash3 of its key
(or group), not by its position: the same row lands in the same split whatever the
file order, and rows added later do not move earlier ones. The time split sorts by
time and gives the newest rows to test and the slice before them to validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DataError
from ..spec import SplitSpec

if TYPE_CHECKING:  # numpy and pyarrow load when a split is made
    import numpy as np
    import pyarrow as pa

TRAIN, VALID, TEST = "train", "valid", "test"
SPLIT = "_split"


def stable_unit(values: list, seed: int) -> np.ndarray:
    """Map values to [0, 1) with a seeded MurmurHash3 (stable across processes)."""
    import mmh3
    import numpy as np

    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        out[i] = mmh3.hash("\x00" if v is None else str(v), seed, signed=False)
    return out / 2.0**32


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


def _by_unit(u: np.ndarray, test: float, valid: float) -> np.ndarray:
    import numpy as np

    return np.where(u < test, TEST, np.where(u < test + valid, VALID, TRAIN))


def assign_splits(table: pa.Table, spec: SplitSpec, *, target: str, seed: int,
                  key: str | None = None) -> np.ndarray:
    """Return the split name (train, valid, test) of every row of ``table``.

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
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    if n < 10:
        raise DataError(f"split: only {n} usable rows; need at least 10 to split")
    ids = _row_ids(table, key)
    if spec.strategy == "random":
        return _by_unit(stable_unit(ids, seed), spec.test, spec.valid)
    if spec.strategy == "group":
        col = spec.group
        if col not in table.column_names:
            raise DataError(f"split.group: column {col!r} is not in the data")
        return _by_unit(stable_unit(table.column(col).to_pylist(), seed),
                        spec.test, spec.valid)
    if spec.strategy == "stratified":
        labels = table.column(target).to_pylist()
        u = stable_unit(ids, seed)
        out = np.full(n, TRAIN, dtype=object)
        classes = sorted({str(v) for v in labels})
        lab = np.array([str(v) for v in labels], dtype=object)
        for c in classes:
            idx = np.flatnonzero(lab == c)
            idx = idx[np.argsort(u[idx], kind="stable")]
            n_test = int(round(spec.test * len(idx)))
            n_valid = int(round(spec.valid * len(idx)))
            out[idx[:n_test]] = TEST
            out[idx[n_test:n_test + n_valid]] = VALID
        return out.astype(str)
    # time: oldest rows train, then valid, newest test
    col = spec.time
    if col not in table.column_names:
        raise DataError(f"split.time: column {col!r} is not in the data")
    times = table.column(col)
    nulls = times.null_count
    if nulls:
        raise DataError(
            f"split.time: column {col!r} has {nulls} missing values; make it "
            f"required in `validate.required` so such rows are quarantined")
    t = pc.cast(times, pa.int64()).to_numpy() if pa.types.is_timestamp(
        times.type) else np.asarray(times.to_numpy())
    order = np.argsort(t, kind="stable")
    ts = t[order]
    n_test = int(round(spec.test * n))
    n_valid = int(round(spec.valid * n))
    # rows with an equal time value land in one split: a cut between two rows
    # of the same time (or year) would put their twins on both sides of it
    test_at = _tie_start(ts, n - n_test)
    valid_at = _tie_start(ts, n - n_test - n_valid)
    if valid_at >= test_at:
        valid_at = _tie_start(ts, test_at - 1) if test_at > 0 else 0
    if not 0 < valid_at < test_at < n:
        distinct = len(np.unique(ts))
        raise DataError(
            f"split.time: column {col!r} has {distinct} distinct value(s); rows "
            f"with one time value stay in one split, so it cannot make train, "
            f"valid and test (fractions {1 - spec.test - spec.valid:.2f}, "
            f"{spec.valid}, {spec.test}); use a finer time column or another "
            f"strategy")
    out = np.full(n, TRAIN, dtype=object)
    out[order[test_at:]] = TEST
    out[order[valid_at:test_at]] = VALID
    return out.astype(str)


def _tie_start(sorted_times, at: int) -> int:
    """The first position of the run of equal times that holds position
    ``at``: a cut there keeps every tie on the later side."""
    import numpy as np

    if at <= 0:
        return 0
    if at >= len(sorted_times):
        return len(sorted_times)
    return int(np.searchsorted(sorted_times, sorted_times[at], side="left"))
