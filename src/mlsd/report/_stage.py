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
