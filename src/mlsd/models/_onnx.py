"""The learner as ONNX, for scoring outside Python (onnxmltools for LightGBM,
skl2onnx for the linear model), with its parity against native scoring.

What is exported is the learner: its input is the feature vector (the
feature pipeline's ``apply`` output, dense, float32, in the order of
``features.json``'s names), its output the task's scores (binary: P(positive);
multiclass: one probability per class; regression: the value). Models whose
scores need more than the learner (a calibration map, a focal loss's offset,
prediction intervals, several objectives) are refused, naming why: an ONNX
file that scores differently from mlsd would be worse than none.

Optional: ``pip install 'mlsd[onnx]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ._learners import Learner

INPUT = "features"


def _why_not(learner: Learner, manifest: dict[str, Any] | None = None) -> str | None:
    if learner.task == "multilabel":
        return ("it is a set of per-label models (multilabel), one graph each; "
                "ONNX export covers single models")
    if learner.calibration_:
        return "its scores go through a calibration map, which ONNX would not hold"
    if learner.focal:
        return "it was fitted with a focal loss (a custom objective's offset)"
    if manifest and manifest.get("intervals"):
        return "it serves prediction intervals from two more models"
    if manifest and manifest.get("objectives"):
        return "it combines several objectives' models"
    return None


def _modules():
    try:
        import onnxruntime  # noqa: F401
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType
        from skl2onnx import convert_sklearn
    except ImportError as err:
        raise ModelError(f"ONNX export needs onnxmltools, skl2onnx and onnxruntime "
                         f"({err.name} is missing): pip install 'mlsd[onnx]'") from None
    return convert_lightgbm, FloatTensorType, convert_sklearn


def learner_to_onnx(learner: Learner, n_features: int,
                    manifest: dict[str, Any] | None = None) -> bytes:
    """The serialised ONNX model of ``learner`` (refused, with the reason,
    when its scores need more than the learner)."""
    why = _why_not(learner, manifest)
    if why:
        raise ModelError(f"this model cannot be exported to ONNX: {why}")
    convert_lightgbm, FloatTensorType, convert_sklearn = _modules()
    types = [(INPUT, FloatTensorType([None, n_features]))]
    if learner.kind == "lightgbm":
        onx = convert_lightgbm(learner.booster_, initial_types=types, zipmap=False,
                               target_opset=15)
        _round_thresholds_down(onx, learner.booster_)
        return onx.SerializeToString()
    # the linear model is plain coefficients: rebuild the scikit-learn
    # estimator they came from and let skl2onnx write its graph
    from skl2onnx.common.data_types import FloatTensorType as SklFloat
    from sklearn.linear_model import LinearRegression, LogisticRegression

    types = [(INPUT, SklFloat([None, n_features]))]
    if learner.task == "regression":
        est = LinearRegression()
        est.coef_, est.intercept_ = learner.coef_[0], float(learner.intercept_[0])
        est.n_features_in_ = n_features
        onx = convert_sklearn(est, initial_types=types, target_opset=15)
    else:
        est = LogisticRegression()
        est.coef_, est.intercept_ = learner.coef_, learner.intercept_
        est.classes_ = np.arange(max(learner.n_classes, 2))
        est.n_features_in_ = n_features
        if learner.task == "multiclass":
            est.multi_class = "multinomial"
        onx = convert_sklearn(est, initial_types=types, target_opset=15,
                              options={id(est): {"zipmap": False}})
    return onx.SerializeToString()


def _round_thresholds_down(onx, booster) -> int:
    """Make ONNX's float32 splits decide as LightGBM's float64 ones do.

    ONNX trees hold float32 thresholds, and the converter rounds each of
    LightGBM's to the nearest float32; when it rounds up, a float32 input
    just above the true threshold goes left in ONNX and right in LightGBM
    (measured: 0.026 of probability on the example). For a float32 ``x``,
    ``x <= t`` is the same test as ``x <= t32`` with ``t32`` the largest float32
    not above ``t``. The thresholds are matched by value (each ONNX threshold
    to the LightGBM thresholds that round to it); written here because the
    converter has no option for it. Returns how many were changed."""
    thresholds: list[float] = []

    def walk(node: dict) -> None:
        if "split_index" in node:
            if node.get("decision_type", "<=") == "<=":
                thresholds.append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    t = np.asarray(thresholds, dtype=np.float64)
    near = t.astype(np.float32)
    down = np.where(near.astype(np.float64) > t,
                    np.nextafter(near, np.float32(-np.inf)), near)
    floor: dict[float, set[float]] = {}
    for a, d in zip(near.tolist(), down.tolist(), strict=True):
        floor.setdefault(a, set()).add(d)
    changed = 0
    for node in onx.graph.node:
        if not node.op_type.startswith("TreeEnsemble"):
            continue
        attrs = {a.name: a for a in node.attribute}
        values = list(attrs["nodes_values"].floats)
        modes = list(attrs["nodes_modes"].strings)
        for i, (v, mode) in enumerate(zip(values, modes, strict=True)):
            options = floor.get(float(np.float32(v))) if mode == b"BRANCH_LEQ" else None
            if options and len(options) == 1:
                new = next(iter(options))
                if new != v:
                    values[i] = new
                    changed += 1
        del attrs["nodes_values"].floats[:]
        attrs["nodes_values"].floats.extend(values)
    return changed


def onnx_scores(model: bytes, X, task: str) -> np.ndarray:
    """Scores of the ONNX model, shaped as the learner's ``predict``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # no shape warnings on stderr
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    dense = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    outs = session.run(None, {INPUT: dense.astype(np.float32)})
    if task == "regression":
        return np.asarray(outs[0], dtype=float).reshape(-1)
    proba = np.asarray(outs[-1], dtype=float)
    return proba[:, 1] if task == "binary" else proba


def parity(learner: Learner, model: bytes, X) -> dict[str, Any]:
    """ONNX against native scores on the rows of ``X``.

    ONNX takes float32 inputs. On the same float32 values the two must agree
    (``max_gap_float32``, up to float32 arithmetic: ``ok``). Rounding a
    float64 feature to float32 can move a value across a split, so on the
    float64 rows mlsd scores a few rows may differ: ``rows_moved`` counts
    those whose score moves by more than 1e-4, ``max_gap`` the largest move."""
    dense = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    native = np.asarray(learner.predict(X), dtype=float)
    native32 = np.asarray(learner.predict(
        dense.astype(np.float32).astype(np.float64)), dtype=float)
    got = onnx_scores(model, dense, learner.task).reshape(native.shape)
    scale = max(float(np.max(np.abs(native))) if native.size else 1.0, 1.0)
    gap32 = np.abs(got - native32)
    gap = np.abs(got - native)
    moved = gap.reshape(len(gap), -1).max(axis=1) > 1e-4 * scale
    return {"rows": int(dense.shape[0]),
            "max_gap_float32": float(gap32.max(initial=0.0)),
            "max_gap": float(gap.max(initial=0.0)),
            "rows_moved": int(moved.sum()),
            "ok": bool(gap32.max(initial=0.0) <= 1e-5 * scale)}


def export_onnx(learner: Learner, names: list[str], path: Path, *,
                manifest: dict[str, Any] | None = None, check_on=None
                ) -> dict[str, Any]:
    """Write ``learner`` as ONNX to ``path`` (and its inputs' names to
    ``path`` + ``.json``); ``check_on``: feature rows to measure the parity
    on (refused when it fails)."""
    import json

    model = learner_to_onnx(learner, len(names), manifest)
    check = None if check_on is None else parity(learner, model, check_on)
    if check is not None and not check["ok"]:
        raise ModelError(f"the ONNX model scores differently from the learner on "
                         f"the same float32 inputs (max gap "
                         f"{check['max_gap_float32']:.3g} on {check['rows']} rows): "
                         f"not written")
    path = Path(path)
    path.write_bytes(model)
    doc = {"input": INPUT, "dtype": "float32", "features": names,
           "task": learner.task, "kind": learner.kind,
           "output": {"binary": "probabilities[:, 1] = P(positive)",
                      "multiclass": "probabilities, one column per class",
                      "regression": "the value"}[learner.task],
           "parity": check,
           "float32": "ONNX takes float32 features: a value rounded to float32 "
                      "can fall on the other side of a split, so a few rows may "
                      "score differently from mlsd's float64 path "
                      "(parity.rows_moved)",
           "note": "the input is the feature vector: apply the model's "
                   "features.json first (mlsd's serving path does)"}
    path.with_name(path.name + ".json").write_text(json.dumps(doc, indent=1) + "\n")
    return {"path": str(path), **{k: v for k, v in doc.items() if k != "features"},
            "n_features": len(names)}
