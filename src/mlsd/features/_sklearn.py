"""The scikit-learn face of the transforms: ``fit`` and ``transform`` on the
inputs scikit-learn users hold (pandas DataFrames, Arrow tables, 2-D arrays),
through the very ``analyze`` and ``apply`` that ``mlsd run`` uses.

Input checks follow scikit-learn's conventions (its ``check_estimator`` runs
on every transform in the tests): 2-D input with at least one row and one
column, no sparse or complex data, the same number (and names) of columns at
``transform`` as at ``fit``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ..errors import MlsdError, NotFittedError
from ._base import ROW, Target

Y = "__y__"


def _frame_names(X: Any) -> list[str] | None:
    cols = getattr(X, "columns", None)
    if cols is None or not hasattr(X, "dtypes"):
        return None
    names = list(cols)
    return [str(c) for c in names] if all(isinstance(c, str) for c in names) \
        else None


def as_arrow(X: Any, names: list[str] | None = None) -> pa.Table:
    """``X`` as an Arrow table; a 2-D array's columns are named ``x0``, ``x1``...
    (or ``names``, those seen at fit)."""
    if sp.issparse(X):
        raise TypeError("sparse input is not supported: the feature transforms "
                        "read raw columns (pass a dense array or a DataFrame)")
    if isinstance(X, pa.RecordBatch):
        X = pa.Table.from_batches([X])
    if isinstance(X, pa.Table):
        table = X
    elif hasattr(X, "columns") and hasattr(X, "dtypes"):  # a pandas DataFrame
        table = pa.Table.from_pandas(X, preserve_index=False)
        table = table.rename_columns([str(c) for c in table.column_names])
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"Expected 2D array, got an array of shape {arr.shape}. "
                             f"Reshape your data either using array.reshape(-1, 1) "
                             f"for one feature or array.reshape(1, -1) for one "
                             f"sample.")
        if np.iscomplexobj(arr):
            raise ValueError("Complex data not supported")
        if arr.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) "
                             f"while a minimum of 1 is required.")
        names = names if names and len(names) == arr.shape[1] else [
            f"x{i}" for i in range(arr.shape[1])]
        table = pa.table({n: pa.array(arr[:, i], from_pandas=True)
                          for i, n in enumerate(names)})
    if table.num_rows == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape=({table.num_rows}, "
                         f"{table.num_columns})) while a minimum of 1 is required.")
    if table.num_columns == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape=({table.num_rows}, "
                         f"0)) while a minimum of 1 is required.")
    return table


def with_rows(table: pa.Table) -> pa.Table:
    """The table with its rows numbered in ``_row`` (0, 1, ...), if it has not."""
    if ROW in table.column_names:
        return table
    return table.append_column(ROW, pa.array(np.arange(table.num_rows)))


def _engine():
    """One DuckDB connection for the scikit-learn face, per process (opening
    one per fit costs more than a small fit)."""
    global _ENGINE
    if _ENGINE is None:
        from ..engine import DuckDBEngine

        _ENGINE = DuckDBEngine(threads=1)
    return _ENGINE


_ENGINE = None


def _target(y: Any, rows: int) -> tuple[pa.Array, Target]:
    y = np.asarray(y)
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise ValueError(f"y must be one column, got shape {y.shape}")
    y = y.reshape(-1)
    if len(y) != rows:
        raise ValueError(f"Found input variables with inconsistent numbers of "
                         f"samples: [{rows}, {len(y)}]")
    values = np.unique(y[~_isnan(y)]) if y.dtype.kind == "f" else np.unique(y)
    if y.dtype.kind == "f" and len(values) > 2:
        task = "regression"
    else:
        task = "binary" if len(values) <= 2 else "multiclass"
    positive = values.max().item() if task == "binary" and len(values) else True
    return pa.array(y.tolist()), Target(column=Y, task=task, positive=positive)


def _isnan(y: np.ndarray) -> np.ndarray:
    return np.isnan(y) if y.dtype.kind == "f" else np.zeros(len(y), bool)


def fit_frame(transform, X: Any, y: Any = None):
    """Analyse ``X`` (and ``y`` for target encoding) in DuckDB; the fitted
    transforms (one per column when none is named) go to ``fitted_``."""
    names = _frame_names(X)
    table = as_arrow(X)
    target = None
    if transform.supervised:
        if y is None:
            raise ValueError(f"{type(transform).__name__} requires y to be "
                             f"passed, but the target y is None (it learns from "
                             f"the label: call fit(X, y))")
        labels, target = _target(y, table.num_rows)
        table = table.append_column(Y, labels)
    inputs = [c for c in table.column_names if c not in (Y, ROW)]
    if transform.multi:
        parts = [type(transform)(columns=transform.columns or inputs,
                                 **transform.params)]
    elif transform.column is not None:
        parts = [type(transform)(column=transform.column, **transform.params)]
    else:
        parts = [type(transform)(column=c, **transform.params) for c in inputs]
    missing = [c for p in parts for c in p.inputs if c not in inputs]
    if missing:
        raise MlsdError(f"{transform!r}: X has no column {missing[0]!r} (its "
                        f"columns: {inputs})")
    engine = _engine()
    view = engine.from_arrow(with_rows(table))
    try:
        for p in parts:
            p.analyze(engine, view, target=target)
    finally:
        engine.forget(view)
    transform.fitted_ = parts
    transform.n_features_in_ = len(inputs)
    if names is not None:
        transform.feature_names_in_ = np.asarray(names, dtype=object)
    elif hasattr(transform, "feature_names_in_"):
        del transform.feature_names_in_
    transform.input_names_ = inputs
    return transform


def transform_frame(transform, X: Any, *, training: bool = False) -> sp.csr_matrix:
    if not hasattr(transform, "fitted_"):
        raise NotFittedError(f"This {type(transform).__name__} instance is not "
                             f"fitted yet. Call 'fit' with appropriate arguments "
                             f"before using this estimator.")
    names = _frame_names(X)
    fitted_names = getattr(transform, "feature_names_in_", None)
    if fitted_names is not None and names is not None and list(names) != list(
            fitted_names):
        raise ValueError("The feature names should match those that were passed "
                         "during fit.")
    if fitted_names is not None and names is None and not isinstance(
            X, pa.Table | pa.RecordBatch):
        warnings.warn(f"X does not have valid feature names, but "
                      f"{type(transform).__name__} was fitted with feature names",
                      UserWarning, stacklevel=3)
    table = as_arrow(X, transform.input_names_)
    if table.num_columns != transform.n_features_in_:
        raise ValueError(f"X has {table.num_columns} features, but "
                         f"{type(transform).__name__} is expecting "
                         f"{transform.n_features_in_} features as input.")
    if training and transform.supervised:
        table = with_rows(table)
    blocks = [p.apply(table, training=training) for p in transform.fitted_]
    return sp.hstack(blocks, format="csr", dtype="float64")
