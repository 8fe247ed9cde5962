"""Runs logged to MLflow (optional: ``pip install 'mlsd[mlflow]'``).

When ``tracking.mlflow_uri`` is set, the ``track`` stage logs the run it ends
as an MLflow run: the spec's settings as parameters, every test and
validation metric of the model and its baselines (with the intervals'
bounds), the prediction intervals' coverage and the objectives' figures as
metrics, mlsd's ids as tags (run, model, spec hash, code version, dataset
versions), and the report and the model's manifest as artifacts. The model
itself stays in mlsd's registry, which serves it; MLflow gets a record to
compare runs by. ``mlsd track RUN_ID`` logs a run recorded earlier.

MLflow 3 refuses a plain folder (``./mlruns``) as a store unless
``MLFLOW_ALLOW_FILE_STORE=true``; a SQLite file (``sqlite:///mlflow.db``) is the
local store it recommends.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import MlsdError


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list | tuple):
        out[prefix] = json.dumps(value, default=str)[:500]
    elif value is not None:
        out[prefix] = value


def run_params(spec: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The settings worth comparing runs by, flat (MLflow's params are
    strings of at most 6,000 characters)."""
    out: dict[str, Any] = {}
    for key in ("problem", "model", "split", "sample", "imbalance", "evaluation"):
        if spec.get(key) is not None:
            _flat(key, spec[key], out)
    out["seed"] = spec.get("seed")
    out["features"] = len(spec.get("features") or [])
    fitted = ((summary.get("model") or {}).get("metrics") or {}).get("search")
    if fitted:  # the parameters the model was fitted with, searched
        _flat("model.params", fitted["params"], out)
    return {k: str(v)[:6000] for k, v in out.items()}


def run_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Every figure of the model, its baselines, intervals and objectives."""
    out: dict[str, float] = {}

    def put(name: str, v: Any) -> None:
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
            out[name.replace("@", "_")] = float(v)

    m = ((summary.get("model") or {}).get("metrics")) or {}
    for part in ("valid", "test"):
        for k, v in (m.get("model") or {}).get(part, {}).items():
            put(f"{part}_{k}", v)
        for b, doc in (m.get("baselines") or {}).items():
            for k, v in doc.get(part, {}).items():
                put(f"baseline_{b}_{part}_{k}", v)
        for r in (m.get("model") or {}).get(part, {}).get("per_label", []):
            label = re.sub(r"[^\w\-. /]", "_", str(r["label"]))  # MLflow's charset
            for k in ("f1", "precision", "recall", "pr_auc", "threshold"):
                put(f"{part}_label_{label}_{k}", r.get(k))
    boot = m.get("bootstrap") or {}
    for k, iv in (boot.get("intervals") or {}).get("model", {}).items():
        if iv:
            put(f"test_{k}_low", iv[0])
            put(f"test_{k}_high", iv[1])
    for b, mg in (boot.get("margins") or {}).items():
        if mg.get("interval"):
            put(f"margin_over_{b}_low", mg["interval"][0])
            put(f"margin_over_{b}_high", mg["interval"][1])
    iv = m.get("intervals") or {}
    for method, r in (iv.get("methods") or {}).items():
        put(f"interval_{method}_coverage", r.get("coverage"))
        put(f"interval_{method}_mean_width", r.get("mean_width"))
    ob = summary.get("objectives") or {}
    for name, o in (ob.get("objectives") or {}).items():
        for k, v in (o.get("metrics") or {}).items():
            put(f"objective_{name}_{k}", v)
    put("seconds", summary.get("seconds"))
    return out


def log_run(uri: str, experiment: str, *, run_id: str, spec: dict[str, Any],
            summary: dict[str, Any], root: Path,
            artifacts: list[Path] | None = None) -> dict[str, Any]:
    """Log one mlsd run to the MLflow tracking server or store at ``uri``;
    returns the MLflow experiment and run ids."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MlsdError("tracking.mlflow_uri is set but MLflow is not installed: "
                        "pip install 'mlsd[mlflow]'") from None
    import logging
    import os

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # a tracker that does not answer costs seconds, not MLflow's default of
    # 7 retries with backoff and 120 s timeouts (the user's settings win)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    artifact_root = None
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        db = db if db.is_absolute() else (root / db)  # relative to the project
        uri = "sqlite:///" + str(db.resolve())
        artifact_root = (db.resolve().parent / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(
        experiment, artifact_location=artifact_root)
    model = summary.get("model") or {}
    tags = {"mlsd.run_id": run_id, "mlsd.model_id": model.get("model_id", ""),
            "mlsd.task": model.get("task", ""), "mlsd.target": model.get("target", ""),
            "mlsd.datasets": ", ".join(
                f"{d['dataset']}@{d['version']}" for d in
                (summary.get("lineage") or {}).get("datasets", [])),
            "mlflow.runName": run_id}
    run = client.create_run(exp_id, tags={k: str(v) for k, v in tags.items()})
    rid = run.info.run_id
    try:
        from mlflow.entities import Metric, Param

        params = run_params(spec, summary)
        metrics = run_metrics(summary)
        client.log_batch(rid, params=[Param(k, v) for k, v in params.items()],
                         metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
        for path in artifacts or []:
            if Path(path).is_file():
                client.log_artifact(rid, str(path))
        client.set_terminated(rid, "FINISHED")
    except Exception:
        client.set_terminated(rid, "FAILED")
        raise
    return {"uri": uri, "experiment": experiment, "experiment_id": exp_id,
            "mlflow_run_id": rid, "params": len(params), "metrics": len(metrics)}
