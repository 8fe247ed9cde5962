"""One row at a time, without a matrix: the online path's model call.

A served request holds a few rows given as sparse entries (column indices and
values: what ``FeaturePipeline.entries`` makes). Building a SciPy CSR matrix
and calling ``Booster.predict`` on it costs ~50 µs of Python per call, more
than the trees themselves; so:

* a LightGBM booster is called through its C API's single-row fast path
  (``LGBM_BoosterPredictForCSRSingleRowFast``, with a ``FastConfig`` made
  once), which the lightgbm Python package does not expose: written here with
  ctypes on the package's own loaded library; a lock keeps one call at a time
  on the config;
* a linear model is its coefficients: the dot product of the entries, summed
  in index order as SciPy's sparse product does, then the link.

Both give what the learner's ``predict`` gives on the same rows (tests hold
them equal); a learner without a fast path returns None and the caller builds
the matrix.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import numpy as np

C_API_PREDICT_NORMAL = 0
C_API_PREDICT_RAW_SCORE = 1
C_API_DTYPE_FLOAT64 = 1
C_API_DTYPE_INT32 = 2

Entries = tuple[Sequence[int], Sequence[float]]


class LightGBMRows:
    """A booster's single-row fast predictor (see the module)."""

    def __init__(self, booster, n_features: int, *, raw: bool = False):
        from lightgbm.basic import _LIB, _safe_call

        self._lib, self._check = _LIB, _safe_call
        self.n_out = booster.num_model_per_iteration()
        self.n_features = n_features
        self._config = ctypes.c_void_p()
        self._check(self._lib.LGBM_BoosterPredictForCSRSingleRowFastInit(
            booster._handle,
            ctypes.c_int(C_API_PREDICT_RAW_SCORE if raw else C_API_PREDICT_NORMAL),
            ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(C_API_DTYPE_FLOAT64),
            ctypes.c_int64(n_features), ctypes.c_char_p(b"num_threads=1"),
            ctypes.byref(self._config)))
        self._booster = booster  # the config points into it: keep it alive
        self._lock = threading.Lock()
        self._out = np.zeros(self.n_out, dtype=np.float64)
        self._out_len = ctypes.c_int64(0)
        self._indptr = np.zeros(2, dtype=np.int32)

    def predict(self, rows: list[Entries]) -> np.ndarray:
        out = np.empty((len(rows), self.n_out), dtype=np.float64)
        with self._lock:
            for r, (idx, vals) in enumerate(rows):
                n = len(idx)
                indices = np.asarray(idx, dtype=np.int32)
                data = np.asarray(vals, dtype=np.float64)
                if n > 1 and (np.diff(indices) < 0).any():  # sorted, as CSR
                    order = np.argsort(indices, kind="stable")
                    indices, data = indices[order], data[order]
                self._indptr[1] = n
                self._check(self._lib.LGBM_BoosterPredictForCSRSingleRowFast(
                    self._config,
                    self._indptr.ctypes.data_as(ctypes.c_void_p),
                    ctypes.c_int(C_API_DTYPE_INT32),
                    indices.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                    data.ctypes.data_as(ctypes.c_void_p),
                    ctypes.c_int64(2), ctypes.c_int64(n),
                    ctypes.byref(self._out_len),
                    self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
                out[r] = self._out
        return out[:, 0] if self.n_out == 1 else out

    def __del__(self):
        config = getattr(self, "_config", None)
        if config is not None and config.value:
            try:
                self._lib.LGBM_FastConfigFree(config)
            except Exception:  # noqa: BLE001 - the library may be gone at exit
                pass


def linear_scores(coef: np.ndarray, intercept: np.ndarray,
                  rows: list[Entries]) -> np.ndarray:
    """The decision values ``x @ coef.T + intercept`` of sparse rows, each
    summed in index order (as SciPy's CSR product sums a row)."""
    out = np.empty((len(rows), coef.shape[0]), dtype=np.float64)
    for r, (idx, vals) in enumerate(rows):
        indices = np.asarray(idx, dtype=np.int64)
        data = np.asarray(vals, dtype=np.float64)
        if len(indices) > 1 and (np.diff(indices) < 0).any():
            order = np.argsort(indices, kind="stable")
            indices, data = indices[order], data[order]
        for k in range(coef.shape[0]):
            acc = 0.0
            for j, v in zip(coef[k, indices].tolist(), data.tolist(), strict=True):
                acc += j * v
            out[r, k] = acc + intercept[k]
    return out
