"""The audit's view of a train/test pair: the task, column kinds, encodings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError

KINDS = ("numeric", "categorical", "text", "id", "time", "other")
MAX_CATEGORIES = 100  # more distinct values than this (and than 5% of rows): an id
TEXT_MEAN_CHARS = 30  # longer strings with spaces are free text


def numeric(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as float64 with NaN for missing (times in seconds, bools 0/1)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_timestamp(t):
        arr = pc.divide(pc.cast(pc.cast(arr, pa.timestamp("us")), pa.int64()), 1e6)
    elif pa.types.is_boolean(t):
        arr = pc.cast(arr, pa.int8())
    return np.asarray(pc.cast(arr, pa.float64()).fill_null(np.nan)
                      .to_numpy(zero_copy_only=False), dtype=np.float64)


def codes(train: pa.ChunkedArray, test: pa.ChunkedArray
          ) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Integer codes of the values of both splits over one dictionary (-1 for
    missing), and the dictionary."""
    both = pa.chunked_array(train.chunks + test.chunks, type=train.type)
    enc = pc.dictionary_encode(both).combine_chunks()
    idx = np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                     dtype=np.int64)
    return idx[:len(train)], idx[len(train):], enc.dictionary


def codes_of(arr: pa.ChunkedArray) -> np.ndarray:
    """Integer codes of one column's values (-1 for missing)."""
    c, _, _ = codes(arr, pa.chunked_array([], type=arr.type))
    return c


@dataclass
class Pair:
    """A train/test pair ready for the checks.

    ``y_train``/``y_test`` are class codes (classification) or floats
    (regression); rows with a missing target are left out, and counted.
    """

    train: pa.Table
    test: pa.Table
    target: str
    task: str
    y_train: np.ndarray
    y_test: np.ndarray
    classes: list = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    time: str | None = None
    group: str | None = None
    allow_shared: list[str] = field(default_factory=list)
    dropped_no_target: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    _numbers: dict[tuple[str, str], np.ndarray] = field(default_factory=dict,
                                                        repr=False)

    def numbers(self, split: str, col: str) -> np.ndarray:
        """A column of train or test as float64 (see :func:`numeric`), converted
        once however many checks read it."""
        key = (split, col)
        if key not in self._numbers:
            table = self.train if split == "train" else self.test
            self._numbers[key] = numeric(table.column(col))
        return self._numbers[key]

    @property
    def features(self) -> list[str]:
        """The columns a model could use: all but the target and kinds we skip."""
        return [c for c, k in self.kinds.items() if c != self.target
                and k != "other"]

    def sample_index(self, n: int) -> np.ndarray:
        """A seeded sample of train row positions (all rows if fewer)."""
        rows = self.train.num_rows
        if rows <= n:
            return np.arange(rows)
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(rows, size=n, replace=False))


def infer_task(y: pa.ChunkedArray) -> str:
    """binary, multiclass or regression, from the target's values."""
    t = y.type
    distinct = pc.count_distinct(y).as_py()
    if pa.types.is_floating(t):
        whole = pc.all(pc.equal(pc.floor(y), y)).as_py()
        if not whole or distinct > 20:
            return "regression"
    elif pa.types.is_integer(t) and distinct > 20:
        return "regression"
    if distinct < 2:
        raise DataError(f"the target has {distinct} distinct value(s): nothing to "
                        f"learn")
    return "binary" if distinct == 2 else "multiclass"


def column_kind(arr: pa.ChunkedArray, rows: int) -> str:
    """numeric, categorical, text, id (many distinct short strings), time."""
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "time"
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return "numeric"
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return "other"
    present = arr.drop_null()
    if len(present) == 0:
        return "categorical"
    distinct = pc.count_distinct(present).as_py()
    if distinct <= max(MAX_CATEGORIES, 0.05 * rows):
        return "categorical"
    sample = present.slice(0, 20_000)
    mean_len = pc.mean(pc.utf8_length(sample)).as_py() or 0
    spaces = pc.mean(pc.cast(pc.match_substring(sample, " "), pa.int8())).as_py()
    if mean_len >= TEXT_MEAN_CHARS and (spaces or 0) > 0.5:
        return "text"
    return "id"


def make_pair(train: pa.Table, test: pa.Table, *, target: str,
              task: str | None = None, time: str | None = None,
              group: str | None = None, allow_shared: list[str] | None = None,
              seed: int = 0) -> Pair:
    """Check the two tables agree, encode the target, and classify columns."""
    for name, table in (("train", train), ("test", test)):
        if target not in table.column_names:
            raise DataError(f"{name}: no target column {target!r} (columns: "
                            f"{', '.join(table.column_names)})")
        for col in (time, group, *(allow_shared or [])):
            if col and col not in table.column_names:
                raise DataError(f"{name}: no column {col!r} (columns: "
                                f"{', '.join(table.column_names)})")
    missing = [c for c in train.column_names if c not in test.column_names]
    extra = [c for c in test.column_names if c not in train.column_names]
    if missing or extra:
        raise DataError("train and test must have the same columns; "
                        + (f"test lacks {missing}" if missing else "")
                        + ("; " if missing and extra else "")
                        + (f"test has {extra} that train lacks" if extra else ""))
    test = test.select(train.column_names)
    if train.schema != test.schema:
        test = test.cast(train.schema, safe=False)
    dropped = {name: t.column(target).null_count for name, t in
               (("train", train), ("test", test)) if t.column(target).null_count}
    train = train.filter(pc.is_valid(train.column(target)))
    test = test.filter(pc.is_valid(test.column(target)))
    if train.num_rows == 0 or test.num_rows == 0:
        raise DataError("train and test each need rows with a target")
    task = task or infer_task(train.column(target))
    if task == "regression":
        y_train = numeric(train.column(target))
        y_test = numeric(test.column(target))
        classes: list = []
    else:
        c_train, c_test, dictionary = codes(train.column(target), test.column(target))
        classes = dictionary.to_pylist()
        order = np.argsort(np.array([str(c) for c in classes]))
        remap = np.empty(len(classes), dtype=np.int64)
        remap[order] = np.arange(len(classes))
        y_train, y_test = remap[c_train], remap[c_test]
        classes = [classes[i] for i in order]
    kinds = {c: column_kind(train.column(c), train.num_rows)
             for c in train.column_names if c != target}
    return Pair(train=train, test=test, target=target, task=task, y_train=y_train,
                y_test=y_test, classes=classes, kinds=kinds, time=time, group=group,
                allow_shared=list(allow_shared or []), dropped_no_target=dropped,
                seed=seed)
