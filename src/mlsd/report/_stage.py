"""The report stage: the run as one self-contained HTML file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..lake import inside
from ..runtime import ArtifactRef, RunContext, StageResult, merge, stage


def _settings(ctx: RunContext) -> dict[str, Any]:
    # it renders what the stages before it recorded
    return {"report": ctx.spec.report}


@stage(writes={"report": "artifact"}, relations={"model": "reported_in"},
       settings=_settings)
def report(ctx: RunContext, model: ArtifactRef, audit: dict[str, Any]
           ) -> StageResult:
    """Render the run summary, the model's curves and importance, the audit
    and the SHAP charts into ``.mlsd/reports/RUN.html`` (opens offline)."""
    from ..models import load_model
    from ._html import render_report  # plotly and jinja2, only when reporting

    path = inside(ctx.project.home, "reports", f"{ctx.run_id}.html")
    rel = ctx.relative(path)
    entries = {"paths": {"report": rel}}
    merge(ctx.summary, entries)
    ctx.summary["seconds"] = round(
        (datetime.now(UTC) - ctx.started_at).total_seconds(), 3)
    evaluation = load_model(ctx, model).evaluation
    render_report(ctx.summary, curves=evaluation["curves"],
                  importance=evaluation["importance"], path=path,
                  audit=audit["pair"], explanation=audit["explanation"])
    from ._retention import prune_reports

    removed = prune_reports(ctx.project.home, ctx.catalog, ctx.spec.report.keep,
                            current=path)
    if removed:
        entries["reports_removed"] = len(removed)
    return StageResult(
        outputs={"report": ArtifactRef(artifact_id=f"report-{ctx.run_id}",
                                       kind="report", path=rel)},
        summary=entries, note=rel)


def _track_settings(ctx: RunContext) -> dict[str, Any]:
    return {"tracking": ctx.spec.tracking}


@stage(name="track", writes={"tracking": "memory"}, settings=_track_settings)
def track(ctx: RunContext, model: ArtifactRef, report: ArtifactRef) -> StageResult:
    """Log the run to MLflow when ``tracking.mlflow_uri`` is set (else
    nothing): parameters, metrics, ids, the report and the model manifest. A
    tracker that fails is a warning; the run and its model stand."""
    t = ctx.spec.tracking
    if not t.mlflow_uri:
        return StageResult(outputs={"tracking": None}, note="no tracker configured")
    from ._mlflow import log_run

    spec = ctx.spec.model_dump(mode="json", by_alias=True)
    try:
        res = log_run(t.mlflow_uri, t.experiment or ctx.spec.name, run_id=ctx.run_id,
                      spec=spec, summary=ctx.summary, root=ctx.root,
                      artifacts=[ctx.root / report.path,
                                 ctx.root / model.path / "manifest.json"])
    except Exception as err:  # noqa: BLE001 - a tracker's failure is said, not fatal
        warning = f"not logged to MLflow at {t.mlflow_uri}: {err}"
        return StageResult(outputs={"tracking": None},
                           summary={"tracking": {"warning": warning}}, note=warning)
    return StageResult(outputs={"tracking": res}, summary={"tracking": res},
                       note=f"MLflow run {res['mlflow_run_id']} in experiment "
                            f"{res['experiment']!r}")
