"""The transform contract: ``analyze`` on the training split, a pure ``apply``.

Every transform turns one or more raw columns into one block of model inputs (a
SciPy CSR matrix, since hashed text and ids are sparse). ``analyze`` computes the
learned state with engine aggregates over the training rows only; ``apply`` is a
pure function of that state and an Arrow table, used alike for batch training and
batch scoring; ``apply_row`` is the same function for one row given as a dict of
raw values (online serving), and a property-based test holds the two equal.
State is plain JSON.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ..errors import MlsdError, NotFittedError

OTHER, MISSING = "__other__", "__missing__"
ROW = "_row"  # the training table's row number (see mlsd.trainingdata)

Entries = tuple[list[int], list[float]]
"""One row's block as sparse entries: column indices (within the block), values."""


@dataclass(frozen=True)
class Target:
    """What a supervised transform (target encoding) learns against.

    Parameters
    ----------
    column : str
        The label column of the training table.
    task : str
        ``binary``, ``multiclass`` or ``regression``.
    positive : Any
        Binary tasks: the label value of the positive class.
    """

    column: str
    task: str
    positive: Any = True


def column_of(table: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
    """One column as a single Arrow array."""
    if name not in table.schema.names:
        raise MlsdError(f"features: input lacks column {name!r}")
    col = table.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def floats(col: pa.Array) -> np.ndarray:
    """A column as float64 with NaN for missing (a fresh, writable array)."""
    x = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return np.array(x, dtype=np.float64)


def row_float(v: Any) -> float:
    """One raw value as the batch path's float64 (NaN for missing)."""
    if v is None:
        return math.nan
    return float(v)


def texts(col: pa.Array) -> pa.Array:
    """A column as Arrow strings (how categories are compared and hashed)."""
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def row_text(v: Any) -> str | None:
    """One raw value as the batch path's string: exactly Arrow's cast, so a
    category means the same online and in batch (``True`` -> ``"true"``, a float
    in Arrow's shortest form)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return pc.cast(pa.scalar(v), pa.string()).as_py()


def block(values: np.ndarray) -> sp.csr_matrix:
    """A dense (rows x k) or (rows,) float array as a CSR block (zeros left
    out, NaN kept: what SciPy's conversion gives, built directly in half its
    time, which a 500-row scoring batch pays once a numeric feature)."""
    v = values.reshape(values.shape[0], -1)
    kept = v != 0
    index = np.int32 if v.size < 2**31 else np.int64
    indptr = np.zeros(v.shape[0] + 1, index)
    np.cumsum(kept.sum(axis=1), out=indptr[1:])
    return sp.csr_matrix((v[kept], np.nonzero(kept)[1].astype(index), indptr),
                         shape=v.shape)


def entries(values: Sequence[float]) -> Entries:
    """A dense row as sparse entries (zeros left out, as CSR stores them)."""
    idx = [i for i, v in enumerate(values) if v != 0]
    return idx, [float(values[i]) for i in idx]


def one_hot(n: int, j: np.ndarray, width: int) -> sp.csr_matrix:
    """Rows with a single 1 at column ``j[i]`` (built as CSR directly: one
    entry a row needs no sorting)."""
    return sp.csr_matrix((np.ones(n), np.asarray(j, dtype=np.int64),
                          np.arange(n + 1, dtype=np.int64)), shape=(n, width))


def plain(x: Any) -> float | None:
    """A JSON-safe float (None for missing or NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


class Transform(ABC):
    """Base of feature transforms (template method: ``analyze`` -> ``_analyze``,
    ``apply`` -> ``_apply``, ``apply_row`` -> ``_row``).

    Constructors only store their parameters (keyword-only); ``state_`` is set by
    :meth:`analyze` or read from JSON. A transform reads ``column`` or, for the
    ones that combine several, ``columns``.

    The scikit-learn face (``fit``, ``transform``, ``fit_transform``,
    ``get_feature_names_out``) runs the same ``analyze`` and ``apply`` on a
    pandas DataFrame, an Arrow table or a 2-D array (columns ``x0``, ``x1``...).
    """

    kind: ClassVar[str] = ""
    stateless: ClassVar[bool] = False
    supervised: ClassVar[bool] = False
    multi: ClassVar[bool] = False  # reads several columns

    def __init__(self, *, column: str | None = None,
                 columns: Sequence[str] | None = None, **params: Any):
        # the arguments are stored as given (scikit-learn's clone relies on it)
        self.column = column
        self.columns = columns
        for k, v in params.items():
            setattr(self, k, v)

    @property
    def params(self) -> dict[str, Any]:
        """The transform's own settings (every constructor argument but the
        column(s)), by name."""
        return {k: getattr(self, k) for k in self._param_names()
                if k not in ("column", "columns")}

    # -- identity ---------------------------------------------------------

    @property
    def inputs(self) -> list[str]:
        """The raw columns this transform reads."""
        if self.columns is not None:
            return list(self.columns)
        return [self.column] if self.column is not None else []

    @property
    def label(self) -> str:
        """The feature's name in reports: its column, or its columns joined."""
        return self.column if self.columns is None else "*".join(self.columns)

    def __repr__(self) -> str:
        what = (f"column={self.column!r}" if self.columns is None
                else f"columns={self.columns!r}")
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({what}{args})"

    # -- learning ---------------------------------------------------------

    known_: dict | None = None  # column summaries the pipeline computed at once

    def analyze(self, engine, table, *, target: Target | None = None,
                known: dict | None = None) -> Transform:
        """Learn the state from the training rows (an Ibis table). ``known``:
        numeric summaries already computed, by (column, quantiles)."""
        self.known_ = known
        try:
            if self.supervised:
                if target is None:
                    raise MlsdError(f"{self!r} learns from the label: analyze() "
                                    f"needs target=Target(column, task)")
                self.state_ = self._analyze(engine, table, target)
            else:
                self.state_ = self._analyze(engine, table)
        finally:
            self.known_ = None
        return self

    def summaries_wanted(self) -> dict[str, int]:
        """Numeric columns whose summary the analysis reads (and how many
        quantiles), so a pipeline can compute them all in one scan."""
        return {}

    def _analyze(self, engine, table, *args) -> dict[str, Any]:
        return {}

    def check_fitted(self) -> dict[str, Any]:
        if not hasattr(self, "state_"):
            raise NotFittedError(
                f"{self!r} has no state: call analyze() (or from_state()) first")
        return self.state_

    # -- applying ---------------------------------------------------------

    def apply(self, table: pa.Table | pa.RecordBatch, *, training: bool = False
              ) -> sp.csr_matrix:
        """The feature block for every row of ``table`` (a pure function of the
        state). ``training=True`` marks the training rows themselves: a
        supervised transform then gives each row its out-of-fold value."""
        state = self.check_fitted()
        cols = [column_of(table, c) for c in self.inputs]
        if training and self.supervised:
            return self._apply_training(state, cols, table)
        return self._apply(state, *cols)

    def _apply_training(self, state, cols, table) -> sp.csr_matrix:
        return self._apply(state, *cols)

    @abstractmethod
    def _apply(self, state: dict, *cols: pa.Array) -> sp.csr_matrix:
        """The block for the input columns, given the state."""

    def apply_row(self, row: Mapping[str, Any]) -> Entries:
        """One row's block as sparse entries, from a dict of raw values (what
        ``Table.to_pylist()`` gives). Equal to :meth:`apply` of that row."""
        return self.row_function()(*(row.get(c) for c in self.inputs))

    def row_function(self):
        """``apply_row`` as a function of the input values alone, with the state
        bound (what a serving loop calls), built once per state: transforms on
        the fast path build it with their constants precomputed
        (``_row_function``), the others bind the state to ``_row``."""
        return self._memo(self.check_fitted(), "row", self._row_function)

    def _row_function(self, state: dict):
        import functools

        return functools.partial(self._row, state)

    def __getstate__(self) -> dict[str, Any]:
        # the one-row cache holds bound functions: rebuilt after unpickling
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def _memo(self, state: dict, key: str, build) -> Any:
        """``build(state)``, computed once and kept while the state stays the
        same object (lookups and bound functions of the one-row path)."""
        cache = self.__dict__.setdefault("_cache", {})
        hit = cache.get(key)
        if hit is None or hit[0] is not state:
            hit = cache[key] = (state, build(state))
        return hit[1]

    def _row(self, state: dict, *values: Any) -> Entries:
        # the general one-row path: the batch apply on a one-row table (exact by
        # construction); the transforms on the serving fast path override it
        m = self._apply(state, *(pa.array([v]) for v in values)).tocsr()
        m.sort_indices()
        return m.indices.tolist(), m.data.tolist()

    # -- naming -----------------------------------------------------------

    @abstractmethod
    def _names(self, state: dict) -> list[str]:
        """Output column names, given the state."""

    def names(self) -> list[str]:
        """Names of the output columns, in order."""
        return self._names(self.check_fitted())

    def notes(self) -> dict[str, Any]:
        """What the analysis found that a reader should see (collision rates,
        sizes); empty by default."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "params": self.params, "state": self.check_fitted()}
        if self.columns is not None:
            out["columns"] = list(self.columns)
        else:
            out["column"] = self.column
        return out

    # -- the scikit-learn face ---------------------------------------------

    @classmethod
    def _param_names(cls) -> tuple[str, ...]:
        names = cls.__dict__.get("_names_cache")
        if names is None:
            import inspect

            names = tuple(p for p in inspect.signature(cls.__init__).parameters
                          if p != "self")
            cls._names_cache = names
        return names

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn's ``get_params``)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> Transform:
        known = self._param_names()
        for k, v in params.items():
            if k not in known:
                raise ValueError(f"Invalid parameter {k!r} for estimator "
                                 f"{type(self).__name__}: valid parameters are "
                                 f"{known}")
            setattr(self, k, v)
        return self

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(estimator_type="transformer",
                    target_tags=TargetTags(required=self.supervised),
                    transformer_tags=TransformerTags(preserves_dtype=["float64"]),
                    input_tags=InputTags(allow_nan=True, string=True,
                                         categorical=True))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "fitted_")

    def fit(self, X, y=None) -> Transform:
        """Analyse ``X`` (a DataFrame, an Arrow table or a 2-D array; ``y``, the
        label, for target encoding) with the same ``analyze`` ``mlsd run`` uses.
        Without ``column`` (or ``columns``) every column of ``X`` is
        transformed, each on its own (a multi-column transform reads them all)."""
        from ._sklearn import fit_frame

        return fit_frame(self, X, y)

    def transform(self, X) -> sp.csr_matrix:
        """The feature block of every row of ``X`` (what ``apply`` gives)."""
        from ._sklearn import transform_frame

        return transform_frame(self, X)

    def fit_transform(self, X, y=None) -> sp.csr_matrix:
        """Fit, then apply; target encoding gives the fitted rows their
        out-of-fold values (like scikit-learn's ``TargetEncoder``)."""
        from ._sklearn import transform_frame

        self.fit(X, y)
        return transform_frame(self, X, training=True)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        if not hasattr(self, "fitted_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call "
                                 f"fit() first")
        return np.asarray([n for t in self.fitted_ for n in t.names()], dtype=object)
