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
        # the call's own prototype (the library's shared function object is
        # left as lightgbm set it), its buffers made once with their
        # addresses: the marshalling was 7x the C call (14 us against 2)
        self._call = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
            ctypes.c_void_p, ctypes.c_void_p)(
                ("LGBM_BoosterPredictForCSRSingleRowFast", self._lib))
        self._out = np.zeros(self.n_out, dtype=np.float64)
        self._out_len = ctypes.c_int64(0)
        self._indptr = np.zeros(2, dtype=np.int32)
        self._indices = np.zeros(max(n_features, 1), dtype=np.int32)
        self._data = np.zeros(max(n_features, 1), dtype=np.float64)
        self._args = (self._config, ctypes.c_void_p(self._indptr.ctypes.data),
                      C_API_DTYPE_INT32, ctypes.c_void_p(self._indices.ctypes.data),
                      ctypes.c_void_p(self._data.ctypes.data), 2,
                      ctypes.addressof(self._out_len),
                      ctypes.c_void_p(self._out.ctypes.data))

    def predict(self, rows: list[Entries]) -> np.ndarray:
        out = np.empty((len(rows), self.n_out), dtype=np.float64)
        config, indptr, itype, indices, data, two, out_len, res = self._args
        with self._lock:
            for r, (idx, vals) in enumerate(rows):
                n = len(idx)
                if n > len(self._indices):
                    raise ValueError(f"a row of {n} entries for a model of "
                                     f"{self.n_features} features")
                self._indices[:n] = idx
                self._data[:n] = vals
                if n > 1 and (idx != sorted(idx) if isinstance(idx, list) else
                              bool((np.diff(self._indices[:n]) < 0).any())):
                    order = np.argsort(self._indices[:n], kind="stable")
                    self._indices[:n] = self._indices[:n][order]
                    self._data[:n] = self._data[:n][order]
                self._indptr[1] = n
                ret = self._call(config, indptr, itype, indices, data, two, n,
                                 out_len, res)
                if ret:
                    self._check(ret)
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
