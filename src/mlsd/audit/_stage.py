"""The audit stage: the pair audit of the run's split and SHAP of its model."""

from __future__ import annotations

from typing import Any

from ..runtime import ArtifactRef, DatasetRef, RunContext, StageResult, stage
from ..trainingdata import TEST, TRAIN, VALID, split_parts


def _settings(ctx: RunContext) -> dict[str, Any]:
    spec = ctx.spec
    return {"audit": spec.audit, "time": spec.split.time, "group": spec.split.group,
            "key": spec.key, "task": spec.problem.task, "seed": spec.seed,
            "separator": spec.problem.separator}


@stage(writes={"audit": "memory"}, settings=_settings)
def audit(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
          model: ArtifactRef) -> StageResult:
    """Audit the run's split for leakage and generalisation (the checks of
    ``mlsd audit`` on train+valid against test, over the columns the model
    reads) and explain the model with SHAP on validation rows."""
    # imported here: declaring the stage costs no SciPy, sklearn or LightGBM
    from ..models import explain, labelled_matrices, load_model
    from ._leakage import audit_splits
    from ._pair import audit_labels, audit_pair

    spec = ctx.spec
    target = spec.problem.target
    artifact = load_model(ctx, model)
    pipeline = artifact.pipeline
    # the columns the model reads, the label, the split's time and groups,
    # the key and the shared entities: no other column is read
    keys = [spec.key] if isinstance(spec.key, str) else list(spec.key or [])
    rows, labels, parts = split_parts(ctx, training, splits, list(dict.fromkeys(
        [*pipeline.columns, target, *keys,
         *([spec.split.time] if spec.split.time else []),
         *([spec.split.group] if spec.split.group else []),
         *spec.audit.allow_shared])))
    findings = audit_splits(rows, labels, feature_columns=pipeline.columns,
                            key=spec.key, group=spec.split.group,
                            allow_shared=spec.audit.allow_shared)
    # the same audit `mlsd audit` makes, on train (+ valid) against test,
    # over the columns the model reads
    audit_cols = list(dict.fromkeys(
        [*pipeline.columns, target,
         *([spec.split.time] if spec.split.time else []),
         *([spec.split.group] if spec.split.group else []),
         *[c for c in spec.audit.allow_shared if c in rows.column_names]]))
    import pyarrow as pa

    fit_rows = pa.concat_tables([parts[TRAIN].select(audit_cols),
                                 parts[VALID].select(audit_cols)])
    common = {"target": target, "time_column": spec.split.time,
              "group": spec.split.group, "allow_shared": spec.audit.allow_shared,
              "seed": spec.seed}
    if spec.problem.task == "multilabel":  # each label's indicator in turn
        pair = audit_labels(fit_rows, parts[TEST].select(audit_cols),
                            separator=spec.problem.separator, **common)
    else:
        pair = audit_pair(fit_rows, parts[TEST].select(audit_cols),
                          task=spec.problem.task, **common)
    # SHAP values of the run's own model, on validation rows
    X, _ = labelled_matrices(ctx, pipeline, artifact.manifest["classes"],
                             training, splits)
    explanation = explain(artifact.learner, X[VALID], X[TRAIN], pipeline.names(),
                          pipeline.block_slices(), seed=spec.seed)
    seen = {(f.check, tuple(f.columns)) for f in pair.findings}
    findings = pair.findings + [f for f in findings
                                if (f.check, tuple(f.columns)) not in seen]
    shap = None if explanation is None else {
        k: explanation[k] for k in ("explainer", "rows_used", "background_rows")
    } | {"by_column": explanation["by_column"][:15],
         "by_feature": explanation["by_block"],
         "split_rule": explanation["split_rule"]}
    worst = [f.severity for f in findings]
    return StageResult(
        outputs={"audit": {"pair": pair.to_dict(), "explanation": explanation,
                           "findings": findings}},
        summary={"shap": shap, "audit": [f.to_dict() for f in findings],
                 "audit_design": pair.design, "missingness": pair.missingness},
        note=(f"{len(findings)} finding(s)"
              + (f", {worst.count('high')} high" if "high" in worst else "")))
