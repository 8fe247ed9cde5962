"""Monitoring: the rows a model is served against the rows it learnt from.

The prediction log (what the service wrote: each request's inputs and
outputs, by time) is compared with the model's training split by the audit's
own shift checks (:func:`._checks.shift`: missing-rate shift, PSI and KS for
numbers, PSI, Jensen-Shannon and chi-squared with Cramer's V for categories,
unseen categories), so drift has one definition, tested once. The served
inputs are typed by the model's own validator (its input schema and rules),
as the service typed them.

Besides the inputs: the prediction's distribution (served scores against the
model's scores on its test split, by the same checks), the same figures per
time window (for plots over time), and, once natural labels arrive (feedback
joined to logged predictions within the attribution window), the live metrics
against the test metrics the model was chosen on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from ._checks import THRESHOLDS, shift
from ._data import Pair, column_kind

DRIFT_CHECKS = ("distribution_shift", "unseen_categories", "missing_rate_shift")
PREDICTION = "prediction"


def _text(v: Any) -> str | None:
    """A logged input value as text, for the validator to type again."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)


def served_inputs(log: pa.Table, input_schema: dict[str, Any]) -> pa.Table:
    """The logged inputs as typed rows of the model's input schema (its
    validator types them from text, as a file's rows are), one a logged
    prediction; a row whose value no longer types is null there."""
    from ..models._artifact import row_validator

    cols = list(input_schema["columns"])
    parsed = [json.loads(x) if x else {} for x in log.column("inputs").to_pylist()]
    raw = pa.RecordBatch.from_arrays(
        [pa.array([_text(r.get(c)) for r in parsed], pa.string()) for c in cols],
        names=cols)
    typed, _ = row_validator(input_schema).typed(raw)
    return pa.table({c: typed[c] for c in cols})


def served_outputs(log: pa.Table, task: str) -> np.ndarray | list:
    """What the model answered, as one column: the score (binary), the value
    (regression), the label (multiclass), the labels joined (multilabel)."""
    out = []
    for x in log.column("outputs").to_pylist():
        d = json.loads(x) if x else {}
        if task == "binary":
            out.append(d.get("score"))
        elif task == "regression":
            out.append(d.get("value"))
        elif task == "multilabel":
            labels = d.get("labels")
            out.append(None if labels is None else "|".join(sorted(labels)))
        else:
            out.append(None if d.get("label") is None else str(d.get("label")))
    return out


def reference_outputs(artifact, rows: pa.Table) -> list:
    """The model's own answers on reference rows, shaped as
    :func:`served_outputs` reads the log."""
    decided = artifact.decide(artifact.score(rows))
    return served_outputs(pa.table({"outputs": [json.dumps(d, default=str)
                                                for d in decided]}), artifact.task)


def drift(reference: pa.Table, current: pa.Table, *, columns: list[str],
          kinds: dict[str, str] | None = None, seed: int = 0,
          thresholds: dict[str, float] | None = None
          ) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """The audit's shift checks between two tables of the same columns:
    findings (as dicts) and each column's figures."""
    kinds = kinds or {c: column_kind(reference.column(c), reference.num_rows)
                      for c in columns}
    pair = Pair(train=reference.select(columns), test=current.select(columns),
                target="", task="", y_train=np.empty(0), y_test=np.empty(0),
                kinds={c: kinds[c] for c in columns}, seed=seed)
    found, stats = shift(pair, thresholds)
    return [f.to_dict() for f in found], stats


def _windows(times: np.ndarray, start: float, end: float, size: float
             ) -> list[tuple[float, np.ndarray]]:
    """Consecutive windows of ``size`` seconds from ``start`` to ``end``:
    each one's start and row positions."""
    out = []
    t = start
    while t < end:
        out.append((t, np.flatnonzero((times >= t) & (times < t + size))))
        t += size
    return out


def monitor(*, reference: pa.Table, served: pa.Table, times: np.ndarray,
            served_answers: list, reference_answers: list, task: str,
            window_seconds: float, min_rows: int = 100, seed: int = 0,
            thresholds: dict[str, float] | None = None,
            labels: np.ndarray | None = None, scores: Any = None,
            test_metrics: dict[str, Any] | None = None, primary: str | None = None,
            threshold: float | None = None) -> dict[str, Any]:
    """Everything :mod:`mlsd.audit._monitor` measures (see the module):
    ``reference`` and ``served`` hold the model's input columns, ``times``
    each served row's time (epoch seconds); ``labels`` (class codes or
    values, NaN/-1 where no natural label yet) with ``scores`` (the logged
    model outputs as arrays) give the live metrics."""
    limits = {**THRESHOLDS, "metric_drop": 0.05, **(thresholds or {})}
    columns = [c for c in reference.column_names if c in served.column_names]
    kinds = {c: column_kind(reference.column(c), reference.num_rows) for c in columns}
    # a timestamp moves forward by construction: served rows are newer than
    # the training rows (the audit leaves a time split's column out alike)
    skipped = [c for c in columns if kinds[c] == "time"]
    columns = [c for c in columns if c not in skipped]
    doc: dict[str, Any] = {
        "rows": served.num_rows, "reference_rows": reference.num_rows,
        "thresholds": {k: limits[k] for k in ("psi", "ks", "js", "unseen_share",
                                              "missing_shift", "metric_drop")},
        "kinds": kinds, "alerts": [],
        "skipped": dict.fromkeys(skipped, "a timestamp: newer by construction")}
    if served.num_rows < min_rows:
        doc["status"] = "too_few_rows"
        doc["why"] = (f"{served.num_rows} served row(s) in the range, fewer than "
                      f"monitor.min_rows ({min_rows}): no verdict")
        return doc
    findings, stats = drift(reference, served, columns=columns, kinds=kinds,
                            seed=seed, thresholds=limits)
    doc["inputs"] = stats
    pred_kind = "numeric" if task in ("binary", "regression") else "categorical"
    ref_pred = pa.table({PREDICTION: pa.array(reference_answers)})
    cur_pred = pa.table({PREDICTION: pa.array(served_answers)})
    if cur_pred.schema != ref_pred.schema:
        cur_pred = cur_pred.cast(ref_pred.schema, safe=False)
    pred_findings, pred_stats = drift(ref_pred, cur_pred, columns=[PREDICTION],
                                      kinds={PREDICTION: pred_kind}, seed=seed,
                                      thresholds=limits)
    doc["prediction"] = {**pred_stats[PREDICTION], "kind": pred_kind}
    if pred_kind == "numeric":
        ref = np.asarray(ref_pred.column(0).to_numpy(zero_copy_only=False), float)
        cur = np.asarray(cur_pred.column(0).to_numpy(zero_copy_only=False), float)
        doc["prediction"].update(reference_mean=round(float(np.nanmean(ref)), 4),
                                 served_mean=round(float(np.nanmean(cur)), 4))
    for f in pred_findings:
        f["check"] = "prediction_shift"
    doc["alerts"] = [f for f in findings + pred_findings
                     if f["check"] in (*DRIFT_CHECKS, "prediction_shift")]
    # the same, window by window: what a plot over time shows
    start, end = float(times.min()), float(times.max()) + 1e-6
    rows = []
    for lo, idx in _windows(times, start, end, window_seconds):
        w: dict[str, Any] = {"start": datetime.fromtimestamp(lo, UTC).isoformat(),
                             "rows": len(idx)}
        if len(idx) >= max(10, min_rows // 10):
            take = pa.array(idx)
            _, wstats = drift(reference, served.take(take), columns=columns,
                              kinds=kinds, seed=seed, thresholds=limits)
            w["psi"] = {c: s.get("psi") for c, s in wstats.items()
                        if s.get("psi") is not None}
            w["missing"] = {c: s["missing_test"] for c, s in wstats.items()}
            if pred_kind == "numeric":
                w["prediction_mean"] = round(float(np.nanmean(cur[idx])), 4)
        rows.append(w)
    doc["windows"] = rows
    doc["live"] = _live(labels, scores, task, test_metrics, primary, threshold,
                        limits, times, rows, window_seconds, start)
    if doc["live"].get("alert"):
        doc["alerts"].append(doc["live"]["alert"])
    doc["status"] = "alert" if doc["alerts"] else "ok"
    return doc


def _live(labels, scores, task, test_metrics, primary, threshold, limits, times,
          windows, window_seconds, start) -> dict[str, Any]:
    """The metrics on the served rows that have a natural label, against the
    model's test metrics: an alert when the primary one is worse by more
    than ``metric_drop``."""
    from ..models._metrics import task_metrics

    if labels is None:
        return {"labelled": 0, "why": "no natural labels: set labels.natural and "
                                      "send feedback (POST /feedback)"}
    have = (labels >= 0) if task != "regression" else np.isfinite(labels)
    out: dict[str, Any] = {"labelled": int(have.sum())}
    if have.sum() < 20 or (task == "binary" and len(np.unique(labels[have])) < 2):
        out["why"] = (f"{int(have.sum())} served row(s) have a natural label (both "
                      f"classes needed, at least 20 rows): no live metric yet")
        return out
    live = task_metrics(task, labels[have], scores[have], threshold)
    out["metrics"] = {k: v for k, v in live.items()
                      if isinstance(v, int | float) and not isinstance(v, bool)}
    if task == "binary":
        out["positive_share"] = round(float(np.mean(labels[have] == 1)), 4)
    # PR-AUC moves with the share of positives, ROC-AUC does not: a binary
    # model is also judged on ROC-AUC, so a change in who gives feedback is
    # not taken for a worse model, nor the reverse
    compared = [primary] + (["roc_auc"] if task == "binary" and primary != "roc_auc"
                            else [])
    lower_is_better = ("log_loss", "brier", "rmse", "mae", "hamming_loss")
    drops = {}
    for name in compared:
        if test_metrics and name in out["metrics"] and name in test_metrics:
            was, now = float(test_metrics[name]), float(out["metrics"][name])
            drops[name] = ((now - was) if name in lower_is_better else (was - now),
                           was, now)
    if primary in drops:
        drop, was, now = drops[primary]
        out.update(primary=primary, test=round(was, 4), served=round(now, 4),
                   drop=round(drop, 4))
    out["drops"] = {k: round(v[0], 4) for k, v in drops.items()}
    worst = [(k, v) for k, v in drops.items() if v[0] > limits["metric_drop"]]
    if worst:
        name, (drop, was, now) = max(worst, key=lambda kv: kv[1][0])
        out["alert"] = {
            "check": "live_metric_drop", "severity": "medium", "columns": [],
            "message": f"{name} on the served rows with a natural label is "
                       f"{now:.3f}, against {was:.3f} on the test split: worse by "
                       f"{drop:.3f} (monitor.thresholds.metric_drop "
                       f"{limits['metric_drop']})",
            "evidence": {"labelled": int(have.sum()), "metric": name, "test": was,
                         "served": now}}
    for i, w in enumerate(windows):  # the same metric window by window
        lo = start + i * window_seconds
        mask = have & (times >= lo) & (times < lo + window_seconds)
        if mask.sum() >= 20 and (task != "binary" or len(np.unique(labels[mask])) == 2):
            m = task_metrics(task, labels[mask], scores[mask], threshold)
            if primary in m:
                w[f"live_{primary}"] = round(float(m[primary]), 4)
    return out
