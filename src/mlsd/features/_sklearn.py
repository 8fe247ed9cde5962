"""The scikit-learn face of the transforms: ``fit`` and ``transform`` on the
inputs scikit-learn users hold (pandas DataFrames, Arrow tables, 2-D arrays),
through the very ``analyze`` and ``apply`` that ``mlsd run`` uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import MlsdError
from ._base import ROW, Target


def as_arrow(X: Any, names: list[str] | None = None) -> pa.Table:
    """``X`` as an Arrow table; a 2-D array's columns are named ``x0``, ``x1``...
    (or ``names``, those seen at fit)."""
    if isinstance(X, pa.Table):
        return X
    if isinstance(X, pa.RecordBatch):
        return pa.Table.from_batches([X])
    if hasattr(X, "columns") and hasattr(X, "dtypes"):  # a pandas DataFrame
        return pa.Table.from_pandas(X, preserve_index=False)
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2-D array or a table, got an array of shape "
                         f"{arr.shape}")
    names = names or [f"x{i}" for i in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise ValueError(f"X has {arr.shape[1]} columns; the transform was fitted "
                         f"on {len(names)}")
    return pa.table({n: arr[:, i] for i, n in enumerate(names)})


def with_rows(table: pa.Table) -> pa.Table:
    """The table with its rows numbered in ``_row`` (0, 1, ...), if it has not."""
    if ROW in table.column_names:
        return table
    return table.append_column(ROW, pa.array(np.arange(table.num_rows)))


def fit_frame(transform, X: Any, y: Any = None):
    """Analyse ``X`` (and ``y`` for target encoding) in a private DuckDB."""
    from ..engine import DuckDBEngine

    table = as_arrow(X)
    transform.input_names_ = table.column_names
    target = None
    if transform.supervised:
        if y is None:
            raise MlsdError(f"{transform!r} learns from the label: fit(X, y)")
        y = np.asarray(y)
        if len(y) != table.num_rows:
            raise ValueError(f"y has {len(y)} rows, X has {table.num_rows}")
        values = set(y.tolist())
        task = ("binary" if len(values) == 2 else "regression"
                if y.dtype.kind == "f" else "multiclass")
        positive = max(values) if task == "binary" else True
        table = table.append_column("__y__", pa.array(y))
        target = Target(column="__y__", task=task, positive=positive)
    engine = DuckDBEngine(threads=1)
    transform.analyze(engine, engine.from_arrow(with_rows(table)), target=target)
    return transform
