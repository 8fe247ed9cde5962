"""The features stage: analyse the spec's features on the train split only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..runtime import DatasetRef, RunContext, StageResult, stage
from ..trainingdata import TRAIN, schema_files, split_parts, union_schema

if TYPE_CHECKING:  # the stage's declaration loads without ibis and SciPy
    import scipy.sparse as sp

    from ._pipeline import FeaturePipeline

NUMERIC_TYPES = ("int64", "float64", "bool")


def feature_matrices(ctx: RunContext, pipeline: FeaturePipeline,
                     training: DatasetRef, splits: DatasetRef
                     ) -> dict[str, sp.csr_matrix]:
    """The input matrix of every split (train, valid, test), made by the
    pipeline's one ``apply``; computed once per run for the same state and
    dataset versions."""
    def make() -> dict[str, sp.csr_matrix]:
        _, _, parts = split_parts(ctx, training, splits)
        return {p: pipeline.apply(t) for p, t in parts.items()}
    return ctx.memo(("features.matrices", pipeline.digest(), training.node,
                     splits.node), make)


def _check(ctx: RunContext) -> list[tuple[str, str]]:
    cols = union_schema(ctx).columns
    problems = []
    for i, f in enumerate(ctx.spec.features):
        if f.column not in cols:
            problems.append((f"features[{i}].column",
                             f"{f.column!r} is not in the data"))
        elif f.kind == "time" and cols[f.column] != "timestamp":
            problems.append((f"features[{i}].encode", f"time parts need a "
                             f"timestamp, {f.column!r} is {cols[f.column]} in "
                             f"{schema_files(ctx)}"))
        elif f.kind == "numeric" and cols[f.column] not in NUMERIC_TYPES:
            problems.append((f"features[{i}]", f"{f.column!r} is {cols[f.column]} "
                             f"in {schema_files(ctx)}; a feature without `encode` "
                             f"must be numeric (use onehot or hashing for "
                             f"categories)"))
    return problems


def _settings(ctx: RunContext) -> dict[str, Any]:
    return {"features": ctx.spec.features}


@stage(writes={"features": "memory"}, settings=_settings, check=_check)
def features(ctx: RunContext, training: DatasetRef, splits: DatasetRef
             ) -> StageResult:
    """Analyse every feature of the spec on the train split only (means,
    vocabularies, hash sizes) and apply the fitted pipeline to every split."""
    from ._pipeline import FeaturePipeline

    _, _, parts = split_parts(ctx, training, splits)
    pipeline = FeaturePipeline.from_spec(ctx.spec.features)
    pipeline.analyze(ctx.engine, ctx.engine.from_arrow(parts[TRAIN]))
    X = feature_matrices(ctx, pipeline, training, splits)
    return StageResult(outputs={"features": pipeline},
                       note=f"{X[TRAIN].shape[1]} inputs from "
                            f"{len(pipeline.columns)} columns")
