"""The ingest stage: every source extracted, validated and committed to the lake."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from ..runtime import DatasetRef, RunContext, StageResult, stage
from ._schema import schema_path

if TYPE_CHECKING:
    from ._load import LoadResult


def load_sources(ctx: RunContext, names: list[str] | None = None
                 ) -> list[LoadResult]:
    """Load sources (all by default) into the lake, one progress step each."""
    from ._load import load_source  # connectors, the lake: only when loading

    spec = ctx.spec
    names = list(spec.sources) if names is None else names
    unknown = [n for n in names if n not in spec.sources]
    if unknown:
        raise SpecError(f"unknown source(s) {unknown}; sources are "
                        f"{', '.join(spec.sources)}")
    results = []
    for name in names:
        with ctx.reporter.stage(f"ingest {name}") as st:
            res = load_source(name, spec.sources[name], spec.validate_,
                              root=ctx.root, lake=ctx.lake, catalog=ctx.catalog,
                              run_id=ctx.run_id, on_rows=st.advance,
                              transform=spec.transform, engine=ctx.spark)
            st.note(f"{res.rows_in} read, {res.rows_stored} stored, "
                    f"{res.rows_quarantined} quarantined"
                    + (" (nothing new: no new version)" if res.skipped else ""))
        results.append(res)
    return results


def load_summary(loads: list[LoadResult]) -> dict[str, Any]:
    """The run summary's data entries: per source, totals, top reasons."""
    totals = {k: sum(getattr(r, k) for r in loads)
              for k in ("rows_in", "rows_stored", "rows_quarantined")}
    reasons: dict[str, int] = {}
    for r in loads:
        for k, v in r.reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    return {"sources": [r.to_dict() for r in loads], "totals": totals,
            "top_reasons": sorted(reasons.items(), key=lambda kv: -kv[1])[:5]}


def _settings(ctx: RunContext) -> dict[str, Any]:
    spec = ctx.spec
    schemas = {}
    for name in spec.sources:
        path = schema_path(ctx.root, name)
        schemas[name] = (hashlib.sha256(path.read_bytes()).hexdigest()
                         if path.is_file() else None)
    return {"sources": spec.sources, "validate": spec.validate_,
            "transform": spec.transform, "schemas": schemas}


def _ref(area: str, res: LoadResult, version: int | None) -> DatasetRef | None:
    if version is None:
        return None
    meta = {}
    if area == "sources":
        meta = {"load_id": res.load_id, "rows_stored": res.rows_stored,
                "files": res.files}
    return DatasetRef(area=area, name=res.source, version=version,
                      rows=res.rows_stored if area == "sources"
                      else res.rows_quarantined, write_id=res.load_id, meta=meta)


@stage(writes={"sources": "dataset", "quarantine": "dataset"}, settings=_settings)
def ingest(ctx: RunContext) -> StageResult:
    """Extract every source, validate its rows, commit the accepted ones to
    ``sources/NAME`` and the rejected ones, with their reasons, to
    ``quarantine/NAME``; unchanged input adds no version."""
    loads = load_sources(ctx)
    sources = [r for r in (_ref("sources", x, x.version) for x in loads) if r]
    quarantine = [r for r in (_ref("quarantine", x, x.quarantine_version)
                              for x in loads) if r]
    summary = load_summary(loads)
    summary["engine"] = ("duckdb" if ctx.spark is None else
                         f"spark {ctx.spark.describe()}")
    totals = summary["totals"]
    return StageResult(
        outputs={"sources": sources, "quarantine": quarantine},
        summary=summary,
        note=f"{totals['rows_in']} read, {totals['rows_stored']} stored, "
             f"{totals['rows_quarantined']} quarantined")
