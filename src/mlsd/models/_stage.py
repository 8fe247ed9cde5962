"""The train stage: fit the model and its baselines, save the model artifact."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..runtime import (
    ArtifactRef,
    DatasetRef,
    RunContext,
    StageResult,
    digest,
    stage,
)
from ..spec import ProjectSpec
from ..trainingdata import TRAIN, driver_sample, split_parts, union_schema

if TYPE_CHECKING:  # the stage's declaration loads without LightGBM and sklearn
    import numpy as np
    import pyarrow as pa
    import scipy.sparse as sp

    from ..etl import DataSchema
    from ..features import FeaturePipeline
    from ._artifact import ModelArtifact

IMBALANCED_METRICS = {"binary": ["recall", "f1", "pr_auc"],
                      "multiclass": ["macro_f1", "balanced_accuracy"]}
"""The metrics shown first when the rarest class is scarce."""
DEFAULT_METRICS = {
    "binary": ["pr_auc", "roc_auc", "recall", "precision", "f1", "accuracy"],
    "multiclass": ["macro_f1", "accuracy", "balanced_accuracy", "log_loss"],
    "multilabel": ["micro_pr_auc", "micro_f1", "macro_f1", "macro_pr_auc",
                   "hamming_loss", "subset_accuracy"],
    "regression": ["rmse", "mae", "r2"],
}



def input_schema(spec: ProjectSpec, schema: DataSchema) -> dict[str, Any]:
    """The raw fields a prediction request carries: every column but the target."""
    target = spec.problem.target
    targets = set(spec.problem.targets)  # several objectives: every label
    derived = dict(spec.transform.derive)
    windows = {w.name: w for w in spec.windows}  # read from the online store
    cols = {c: t for c, t in schema.columns.items() if c not in targets
            and c not in derived and c not in windows}
    store = spec.online_store
    return {"columns": cols, "derive": derived,
            "windows": [w.to_dict() for w in windows.values()],
            "online_store": {"url": store.url, "password_env": store.password_env,
                             "prefix": store.prefix or spec.name} if windows else None,
            "required": [c for c in spec.validate_.required if c in cols],
            "key": spec.key, "target": target,
            "targets": sorted(targets),
            "null_values": list(spec.validate_.null_values),
            "rules": serving_rules(spec, cols)}


def serving_rules(spec: ProjectSpec, cols: dict[str, Any]) -> dict[str, Any]:
    """The spec's validation rules that apply to a request's fields: ranges,
    allowed values and patterns of input columns, and the SQL checks that read
    only input columns (one on the target cannot be checked before the
    outcome is known). Serving and `mlsd predict` both enforce them."""
    import duckdb
    import pyarrow as pa

    from ..engine._sandbox import locked_connection
    from ..etl import DataSchema

    v = spec.validate_
    checks = {}
    if v.checks:
        empty = pa.Table.from_pylist([], schema=DataSchema(dict(cols)).arrow())
        con = locked_connection({"batch": empty}, threads=1)
        try:
            for name, expr in v.checks.items():
                try:
                    con.sql(f"SELECT ({expr}) FROM batch").fetchall()
                    checks[name] = expr
                except duckdb.Error:
                    continue  # reads the target or a derived column
        finally:
            con.close()
    return {"ranges": {c: list(r) for c, r in v.ranges.items() if c in cols},
            "allowed": {c: list(a) for c, a in v.allowed.items() if c in cols},
            "patterns": {c: p for c, p in v.patterns.items() if c in cols},
            "checks": checks}


def label_columns(ctx: RunContext) -> list[str] | None:
    """The training table's columns the models stage reads beside the
    feature matrices (labels, objectives, label confidences, the time of a
    time split, slice columns, the numbers whose spread the robustness check
    scales its noise by); None when it needs every raw row (augmentation or
    SMOTENC made from the train split, slices defined by SQL). The driver of
    a Spark run then never holds the raw inputs, often most of the table,
    just to read the labels; the robustness check reads its few test rows
    alone (:func:`_robust_test_rows`)."""
    from ..trainingdata import RAW_RESAMPLERS
    from ..trainingdata.labeling._policy import LABEL_CONFIDENCE
    from ._registry import time_column
    from ._robustness import NUMBER_KINDS

    spec = ctx.spec
    aug, problem = spec.augment, spec.problem
    resamplers = {spec.imbalance.resample, *spec.imbalance.compare}
    if (aug.noise is not None or aug.text is not None or aug.templates is not None
            or isinstance(spec.evaluation.slices, dict)
            or (problem.task != "regression"
                and resamplers & {*RAW_RESAMPLERS, "smote"})):
        return None
    numbers = [c for f in spec.features if f.kind in NUMBER_KINDS for c in f.inputs] \
        if aug.robustness is not None else []
    return list(dict.fromkeys([
        problem.target, *(o.target for o in (problem.objectives or {}).values()),
        LABEL_CONFIDENCE, *([t] if (t := time_column(spec)) else []),
        *spec.evaluation.slices, *numbers]))


def _robust_test_rows(ctx: RunContext, training: DatasetRef, parts: dict,
                      columns: list[str]) -> pa.Table:
    """The test rows the robustness check perturbs, with ``columns``: the
    test split in memory when it holds them, else the check's own seeded
    choice of rows read alone from the lake (a scan that keeps only them)."""
    import pyarrow.compute as pc

    from ..trainingdata import ROW
    from ._robustness import perturbed_rows

    test = parts["test"]
    if all(c in test.column_names for c in columns):
        return test
    chosen = perturbed_rows(test.num_rows, ctx.spec.augment.robustness.rows,
                            ctx.spec.seed)
    wanted = test.column(ROW) if chosen is None else test.column(ROW).take(chosen)
    have = ctx.lake.dataset(training.area, training.name, training.version)
    rows = have.to_table(columns=[c for c in dict.fromkeys([ROW, *columns])
                                  if c in have.schema.names],
                         filter=pc.field(ROW).isin(wanted.combine_chunks()))
    return rows.take(pc.sort_indices(rows, [(ROW, "ascending")]))


def _settle_train_rows(ctx: RunContext, pipeline: FeaturePipeline,
                       training: DatasetRef, splits: DatasetRef) -> None:
    """On Spark, the feature matrices first (once a run): whether the driver
    fits on the whole train split or on a sample of it is decided as they are
    read (``features._stage._driver_share``), and every read of the train
    split's labels, weights or rows after that gets the same rows."""
    if ctx.spark is not None:
        from ..features import feature_matrices

        feature_matrices(ctx, pipeline, training, splits)


def labelled_matrices(ctx: RunContext, pipeline: FeaturePipeline, classes: list,
                      training: DatasetRef, splits: DatasetRef
                      ) -> tuple[dict[str, sp.csr_matrix], dict[str, np.ndarray]]:
    """Inputs and encoded labels of every split, keeping the rows whose label
    the model knows (once per run for the same state, classes and versions)."""
    from ..features import feature_matrices
    from ._train import labels_of

    def make():
        problem = ctx.spec.problem
        _, _, parts = split_parts(ctx, training, splits, label_columns(ctx))
        X = dict(feature_matrices(ctx, pipeline, training, splits))
        y = {}
        for p in parts:
            y[p], keep = labels_of(problem, parts[p].column(
                problem.target).to_pylist(), classes)
            if not keep.all():
                X[p], y[p] = X[p][keep], y[p][keep]
        return X, y
    key = tuple(json.dumps(c, default=str) for c in classes)
    return ctx.memo(("models.labelled", pipeline.digest(), key, training.node,
                     splits.node), make)


def objective_labels(ctx: RunContext, parts: dict, classes: list
                     ) -> dict[str, dict[str, np.ndarray]]:
    """Each objective's labels per split, for the rows
    :func:`labelled_matrices` keeps (NaN: none; a binary objective as 0/1)."""
    import numpy as np

    from ..errors import ModelError
    from ._train import labels_of

    problem = ctx.spec.problem
    keeps = {p: labels_of(problem, rows.column(problem.target).to_pylist(),
                          classes)[1] for p, rows in parts.items()}
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, o in problem.objectives.items():
        out[name] = {}
        for p, rows in parts.items():
            values = rows.column(o.target).to_pylist()
            if o.task == "binary":
                y = np.array([np.nan if v is None else float(v == o.positive)
                              for v in values])
            else:
                try:
                    y = np.array([np.nan if v is None else float(v) for v in values])
                except (TypeError, ValueError):
                    raise ModelError(f"problem.objectives.{name}: {o.target!r} holds "
                                     f"values that are not numbers; a regression "
                                     f"objective needs numbers") from None
            out[name][p] = y[keeps[p]]
        if o.task == "binary":
            seen = out[name]["train"][np.isfinite(out[name]["train"])]
            if not len(seen) or seen.min() == seen.max():
                raise ModelError(f"problem.objectives.{name}: {o.target!r} has one "
                                 f"class only in training (positive "
                                 f"{o.positive!r}); both are needed")
    return out


def train_weights(ctx: RunContext, classes: list, training: DatasetRef,
                  splits: DatasetRef) -> np.ndarray | None:
    """Each training row's sample weight (a weighted or importance sample's),
    for the rows :func:`labelled_matrices` keeps; None when every row weighs 1."""
    from ..trainingdata import WEIGHT
    from ..trainingdata.labeling._policy import LABEL_CONFIDENCE
    from ._train import labels_of

    _, _, parts = split_parts(ctx, training, splits, label_columns(ctx))
    train = parts[TRAIN]
    spec = ctx.spec
    soft = spec.labels.weigh_by_confidence and LABEL_CONFIDENCE in train.column_names
    if WEIGHT not in train.column_names and not soft:
        return None
    problem = spec.problem
    _, keep = labels_of(problem, train.column(problem.target).to_pylist(), classes)
    import numpy as np

    w = (train.column(WEIGHT).to_numpy() if WEIGHT in train.column_names
         else np.ones(train.num_rows))
    if soft:  # probabilistic labels: a row weighs its label's confidence
        conf = train.column(LABEL_CONFIDENCE).to_numpy(zero_copy_only=False)
        w = w * np.nan_to_num(np.asarray(conf, dtype=float), nan=1.0)
    return w[keep]


def augmented_rows(ctx: RunContext, pipeline: FeaturePipeline, train, classes: list
                   ) -> tuple | None:
    """The spec's raw augmented rows (noise, text, templates) made from the
    train split, applied by the fitted pipeline: (X, y, weights, rows per
    method), or None."""
    import numpy as np

    from ..trainingdata import AUGMENTED, WEIGHT, TrainTable, augment_rows
    from ._train import labels_of

    spec = ctx.spec
    aug = augment_rows(TrainTable(train), spec.augment, target=spec.problem.target,
                       seed=spec.seed, root=ctx.root)
    if aug is None:
        return None
    yv, keep = labels_of(spec.problem, aug.column(spec.problem.target).to_pylist(),
                         classes)
    X = pipeline.apply(aug.drop_columns([AUGMENTED]))[keep]
    w = (aug.column(WEIGHT).to_numpy()[keep] if WEIGHT in aug.column_names
         else np.ones(int(keep.sum())))
    how = aug.column(AUGMENTED).to_pylist()
    counts = {m: how.count(m) for m in dict.fromkeys(how)}
    return X, yv[keep], w, counts


def _slices(ctx: RunContext, test, X_test, y_test, result, classes: list
            ) -> dict[str, Any]:
    """The test metrics of every slice the spec declares (see
    :mod:`._slices`)."""
    import numpy as np

    from ..engine._sandbox import check_expression, matches, why
    from ..errors import SpecError
    from ._metrics import PRIMARY
    from ._slices import slice_metrics
    from ._train import labels_of

    spec = ctx.spec
    _, keep = labels_of(spec.problem, test.column(spec.problem.target).to_pylist(),
                        classes)
    rows = test.filter(keep) if not keep.all() else test
    wanted = spec.evaluation.slices
    groups: dict[str, np.ndarray] = {}
    if isinstance(wanted, dict):
        for name, where in wanted.items():
            problem = check_expression(where)
            if problem:
                raise SpecError(f"evaluation.slices.{name}: not one SQL expression: "
                                f"{problem}")
            try:
                groups[name] = np.asarray(matches(rows, where).to_pylist(), dtype=bool)
            except Exception as err:  # noqa: BLE001 - DuckDB's error, said plainly
                raise SpecError(f"evaluation.slices.{name}: {why(err)}") from None
    else:
        for col in wanted:
            if col not in rows.column_names:
                raise SpecError(f"evaluation.slices: column {col!r} is not in the "
                                f"data")
            groups[col] = np.array(["(missing)" if v is None else str(v)
                                    for v in rows.column(col).to_pylist()])
    primary, higher = PRIMARY[spec.problem.task]
    return slice_metrics(spec.problem.task, y_test, result.learner.predict(X_test),
                         result.threshold, groups, primary=primary, higher=higher)


def _test_times(ctx: RunContext, parts, classes: list) -> np.ndarray | None:
    """The times of the test rows the model is measured on, under a time
    split (the bootstrap then draws blocks of consecutive rows), else None."""
    from ._bootstrap import time_numbers
    from ._registry import time_column
    from ._train import labels_of

    spec = ctx.spec
    col = time_column(spec)
    if not col:
        return None

    test = parts["test"]
    _, keep = labels_of(spec.problem, test.column(spec.problem.target).to_pylist(),
                        classes)
    return time_numbers(test.column(col))[keep]


def raw_resampled(ctx: RunContext, pipeline: FeaturePipeline, train, classes: list
                  ) -> dict[str, tuple] | None:
    """The synthetic rows of the raw resamplers the spec uses, made from the
    raw train rows and applied by the fitted pipeline: method -> (X, y).
    ``smotenc`` always; ``smote`` too when the features read numbers and
    categories only (SMOTE would interpolate between one-hot columns, SMOTENC
    picks a category), as the chosen strategy or one compared."""
    from ..errors import SpecError
    from ..trainingdata import RAW_RESAMPLERS, TrainTable, smotenc_rows
    from ._train import labels_of

    spec = ctx.spec
    wanted = [m for m in dict.fromkeys([spec.imbalance.resample,
                                        *spec.imbalance.compare])
              if m in (*RAW_RESAMPLERS, "smote")]
    if not wanted or spec.problem.task == "regression":
        return None
    out: dict[str, tuple] = {}
    made: tuple | None = None  # smote and smotenc make the same rows: once
    for method in wanted:
        if made is None:
            try:
                rows = smotenc_rows(TrainTable(train), columns=pipeline.columns,
                                    target=spec.problem.target, classes=classes,
                                    seed=spec.seed, ratio=spec.imbalance.ratio,
                                    k_neighbors=spec.imbalance.k_neighbors)
            except SpecError:
                if method == "smote":  # text or other inputs: SMOTE on the matrix
                    continue
                raise
            yv, keep = labels_of(spec.problem,
                                 rows.column(spec.problem.target).to_pylist(),
                                 classes)
            made = (pipeline.apply(rows)[keep], yv[keep])
        out[method] = made
    return out or None


def active_curves(spec: ProjectSpec, classes: list, X: dict, y: dict, *,
                  strategies: tuple[str, ...], start: int, batch: int, rounds: int,
                  diverse: bool = False) -> dict[str, Any]:
    """Active-learning learning curves on the train split (labels revealed
    when picked), scored on the test split with the task's primary metric,
    the spec's learner refitted each round (see
    :func:`mlsd.trainingdata.labeling.simulate`)."""
    from ..errors import DataError, SpecError
    from ..trainingdata.labeling._active import simulate
    from ._metrics import PRIMARY, task_metrics
    from ._train import make_learner

    problem = spec.problem
    if problem.task not in ("binary", "multiclass"):
        raise SpecError("the active-learning simulation measures classifiers "
                        "(binary, multiclass)")
    if X["train"].shape[0] < start + batch or X["test"].shape[0] < 10:
        raise DataError(f"too few rows to simulate: {X['train'].shape[0]} train "
                        f"and {X['test'].shape[0]} test rows with a label")
    primary, _ = PRIMARY[problem.task]

    def fit(Xf, yf, seed):
        return make_learner(problem.task, spec.model, len(classes), seed,
                            problem=problem, classes=classes).fit(Xf, yf)

    def score(yt, P):
        return task_metrics(problem.task, yt, P).get(primary) or 0.0

    res = simulate(X["train"], y["train"], fit=fit, X_test=X["test"],
                   y_test=y["test"], score=score, strategies=strategies,
                   start=start, batch=batch, rounds=rounds, diverse=diverse,
                   seed=spec.seed)
    return {"metric": primary, **res}


def load_model(ctx: RunContext, model: ArtifactRef) -> ModelArtifact:
    """The model artifact of ``model``, loaded (and checked) once per run."""
    from ._artifact import ModelArtifact

    return ctx.memo(("models.artifact", model.artifact_id),
                    lambda: ModelArtifact.load(ctx.root / model.path))


def _settings(ctx: RunContext) -> dict[str, Any]:
    spec = ctx.spec
    out = {"problem": spec.problem, "model": spec.model, "seed": spec.seed,
           "imbalance": spec.imbalance, "augment": spec.augment,
           "evaluation": spec.evaluation, "split": spec.split}
    if spec.labels.weigh_by_confidence:  # the rows' weights change
        out["weigh_by_confidence"] = True
    if spec.labels.simulate is not None:
        out["simulate"] = spec.labels.simulate
    return out


def _check(ctx: RunContext) -> list[tuple[str, str]]:
    """The columns ``augment`` names exist and have the types its methods need
    (found before any stage runs, not after the features)."""
    a = ctx.spec.augment
    cols = union_schema(ctx).columns
    numbers = ("int64", "float64")
    problems = []
    for where, col, want in [
            *[(f"augment.noise.columns[{i}]", c, numbers)
              for i, c in enumerate((a.noise.columns or []) if a.noise else [])],
            ("augment.text.column", a.text.column if a.text else None, ("string",)),
            ("augment.templates.column", a.templates.column if a.templates else None,
             ("string",))]:
        if col is None:
            continue
        if col not in cols:
            problems.append((where, f"column {col!r} is not in the data"))
        elif cols[col] not in want:
            problems.append((where, f"{col!r} is {cols[col]}; "
                             f"{'numbers' if want == numbers else 'text'} needed"))
    for name, o in (ctx.spec.problem.objectives or {}).items():
        where = f"problem.objectives.{name}.target"
        if o.target not in cols:
            problems.append((where, f"column {o.target!r} is not in the data (its "
                             f"columns: {', '.join(sorted(cols)[:12])})"))
        elif o.task == "regression" and cols[o.target] not in numbers:
            problems.append((where, f"{o.target!r} is {cols[o.target]}; a "
                             f"regression objective needs numbers"))
    wanted = ctx.spec.evaluation.slices
    if isinstance(wanted, list):
        problems += [(f"evaluation.slices[{i}]", f"column {c!r} is not in the data")
                     for i, c in enumerate(wanted) if c not in cols]
    return problems


@stage(name="train", writes={"model": "artifact"},
       relations={"training": "trained_on", "splits": "split_by"},
       settings=_settings, check=_check)
def train_model(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
                features: FeaturePipeline) -> StageResult:
    """Fit the spec's learner on train (threshold chosen on valid), fit the
    baselines, measure all on valid and test, and save the model artifact with
    its feature state, input schema, metrics, curves and lineage."""
    from ._artifact import MANIFEST, ModelArtifact, folder_digest
    from ._metrics import PRIMARY
    from ._train import encode_target, train

    spec, problem = ctx.spec, ctx.spec.problem
    pipeline = features
    _settle_train_rows(ctx, pipeline, training, splits)
    _, _, parts = split_parts(ctx, training, splits, label_columns(ctx))
    target = problem.target
    classes, _ = encode_target(problem, parts[TRAIN].column(target).to_pylist())
    X, y = labelled_matrices(ctx, pipeline, classes, training, splits)
    names = pipeline.names()
    weights = train_weights(ctx, classes, training, splits)
    extra = augmented_rows(ctx, pipeline, parts[TRAIN], classes)
    from contextlib import nullcontext

    search = spec.model.search
    steps = (ctx.reporter.stage(f"search ({search.trials} trials at most)",
                                total=search.trials) if search else nullcontext())
    with steps as step:
        result = train(problem, spec.model, X=X, y=y, classes=classes, names=names,
                       blocks=pipeline.block_slices(), seed=spec.seed,
                       weights=weights, imbalance=spec.imbalance,
                       augment=spec.augment,
                       extra=None if extra is None else extra[:3],
                       raw=raw_resampled(ctx, pipeline, parts[TRAIN], classes),
                       evaluation=spec.evaluation,
                       test_times=_test_times(ctx, parts, classes),
                       progress=None if step is None
                       else lambda done, value: step.advance(1))
    objectives = objective_summary = None
    if problem.objectives:
        from ._objectives import fit_objectives

        with ctx.reporter.stage(f"objectives ({len(problem.objectives)}: "
                                f"decoupled and joint)"):
            objectives, objective_summary = fit_objectives(
                problem, spec.model, main=result.learner, X=X,
                labels=objective_labels(ctx, parts, classes), seed=spec.seed,
                weights=weights)
    robust = None
    if spec.augment.robustness is not None:
        from ._robustness import robustness

        robust = robustness(result.learner, pipeline, _robust_test_rows(
            ctx, training, parts, [*pipeline.columns, target]), parts[TRAIN],
                            spec.augment.robustness, task=problem.task,
                            target=target, threshold=result.threshold,
                            seed=spec.seed, root=ctx.root)
    active = None
    sim = spec.labels.simulate
    if sim is not None:
        with ctx.reporter.stage("active-learning simulation"):
            active = active_curves(spec, classes, X, y,
                                   strategies=tuple(sim.strategies),
                                   start=sim.start, batch=sim.batch,
                                   rounds=sim.rounds, diverse=sim.diverse)
    augmented = {**(result.augmented or {}), **(extra[3] if extra else {})}
    slices = None
    if spec.evaluation.slices:
        slices = _slices(ctx, parts["test"], X["test"], y["test"], result, classes)

    short = digest({"features": pipeline.to_json(), "metrics": result.metrics,
                    "inputs": [training.node, splits.node]})[:10]
    base = f"m{ctx.started_at.strftime('%Y%m%d%H%M%S')}-{short}"
    model_id, n = base, 1
    folder = ctx.artifact_path("models", model_id)
    while folder.exists():  # the same model, trained again within the second
        n += 1
        model_id = f"{base}-{n}"
        folder = ctx.artifact_path("models", model_id)
    sizes = {p: parts[p].num_rows for p in parts}
    lineage_datasets = training.meta.get("sources", [])
    manifest = {
        "model_id": model_id, "kind": spec.model.kind, "task": problem.task,
        "target": target, "classes": classes, "n_classes": len(classes) or 1,
        "threshold": result.threshold, "threshold_objective":
        problem.threshold if problem.task == "binary" else (
            "f1 per label" if problem.task == "multilabel" else None),
        **({"separator": problem.separator} if problem.task == "multilabel"
           else {}),
        "threads": spec.model.threads, "params": result.learner.params,
        **result.learner.meta(),
        # the rows the model was fitted on, when they are not the train split
        # as stored: resampled (copies, synthetic rows) or weighted
        "training_rows": {
            "resampled": (result.balance or {}).get("resampled"),
            "augmented": augmented or None,
            "class_weight": spec.model.class_weight,
            "sample_weights": weights is not None},
        "created_at": ctx.started_at.isoformat(), "metrics": result.metrics,
        "beats_baselines": result.beats_baselines, "n_features": len(names),
        "lineage": {"run_id": ctx.run_id, "spec_hash": ctx.spec_hash,
                    "code_version": __version__, "datasets": lineage_datasets,
                    "training": {"dataset": training.dataset,
                                 "version": training.version,
                                 # where the target came from (labels.policy)
                                 **({"labels": training.meta["labels"]}
                                    if training.meta.get("labels") else {})},
                    "split": {"dataset": splits.dataset,
                              "version": splits.version, **sizes}},
    }
    ischema = input_schema(spec, union_schema(ctx))
    ModelArtifact.save(folder, manifest=manifest, pipeline=pipeline,
                       learner=result.learner, input_schema=ischema,
                       evaluation={"curves": result.curves,
                                   "importance": result.importance},
                       intervals=result.intervals, objectives=objectives,
                       onnx_rows=X["test"] if spec.model.onnx else None)
    # later stages of this run use the fitted objects, not a copy read back
    ctx.cache[("models.artifact", model_id)] = ModelArtifact(
        folder=folder, manifest=json.loads((folder / MANIFEST).read_text(
            encoding="utf-8")), pipeline=pipeline, learner=result.learner,
        input_schema=ischema, intervals=result.intervals, objectives=objectives)
    rel = ctx.relative(folder)
    ref = ArtifactRef(artifact_id=model_id, kind="model", path=rel,
                      metadata={**{k: manifest[k] for k in (
                          "kind", "task", "target", "threshold", "metrics",
                          "lineage")},
                          # `mlsd models` compares with baselines without
                          # importing the metrics (and scikit-learn)
                          "primary_higher_is_better": PRIMARY[problem.task][1],
                          # every file, the manifest included: checked at load
                          "digest": folder_digest(folder)})
    positive_rate = None
    if problem.task == "binary":
        import numpy as np

        positive_rate = {p: float(np.mean(y[p] == 1)) if len(y[p]) else 0.0
                         for p in parts}
    metric_names = list(dict.fromkeys(problem.metrics
                                      + DEFAULT_METRICS[problem.task]))
    accuracy = None
    if result.balance and result.balance["imbalanced"] and (
            problem.task in IMBALANCED_METRICS):
        # accuracy says little when one class dominates: shown beside the
        # majority class's own, not as a headline metric
        lead = IMBALANCED_METRICS[problem.task]
        metric_names = list(dict.fromkeys(
            [m for m in problem.metrics if m != "accuracy"] + lead
            + [m for m in metric_names if m != "accuracy"]))
        import numpy as np

        majority = int(np.argmax(np.bincount(y[TRAIN].astype(int))))
        accuracy = {"model": result.metrics["model"]["test"].get("accuracy"),
                    "majority_class": round(float(np.mean(y["test"] == majority)),
                                            6),
                    "majority": str(classes[majority])}
    primary = result.metrics["primary"]
    return StageResult(
        outputs={"model": ref},
        summary={
            "fit": _fit_summary(ctx, X[TRAIN], training, splits),
            "split": {"positive_rate": positive_rate},
            "augment": {"rows": augmented or None, "robustness": robust},
            "slices": slices,
            "active_learning": active,
            "objectives": objective_summary,
            "imbalance": None if result.balance is None else {
                **result.balance, "accuracy": accuracy,
                "class_weight": spec.model.class_weight},
            "model": {k: manifest[k] for k in (
                "model_id", "kind", "task", "target", "classes", "threshold",
                "threshold_objective", "n_features", "metrics",
                "beats_baselines")} | {k: manifest[k] for k in ("chain", "separator")
                                       if k in manifest},
            "importance": result.importance[:10],
            "lineage": {"datasets": lineage_datasets},
            "metric_names": metric_names,
            "paths": {"model": rel, "feature_state": f"{rel}/features.json"}},
        note=f"{model_id}: test {primary} "
             f"{result.metrics['model']['test'].get(primary)}")


def _fit_summary(ctx: RunContext, X, training: DatasetRef, splits: DatasetRef
                 ) -> dict[str, Any]:
    """Where the model was fitted and on what: training runs on the driver
    (whatever the engine) from the train split, or from the spec's sample of
    it, with its feature matrix in memory; and which of the training table's
    columns the driver read beside it (:func:`label_columns`)."""
    data = [getattr(X, a) for a in ("data", "indices", "indptr") if hasattr(X, a)]
    size = sum(a.nbytes for a in data) if data else int(getattr(X, "nbytes", 0))
    names = [c for c in ctx.lake.dataset(training.area, training.name,
                                         training.version).schema.names
             if not c.startswith("_")]
    wanted = label_columns(ctx)
    read = names if wanted is None else [c for c in names if c in wanted]
    drawn = driver_sample(ctx, training, splits)
    out = {"on": "driver", "engine": ctx.spec.engine.kind,
           "table_columns": {"read": read, "of": len(names)},
           "rows": int(X.shape[0]), "inputs": int(X.shape[1]),
           "matrix_mib": round(size / 2**20, 1),
           "from": "a sample of the train split" if ctx.spec.sample is not None
           else "the whole train split"}
    if drawn is not None:
        out["from"] = (f"a random sample of {drawn['rows_kept']:,} of the train "
                       f"split's {drawn['of']:,} rows (seed {drawn['seed']}), as the "
                       f"driver's memory allows ({drawn['why']})")
        out["driver_sample"] = drawn
    return out


def prune_stage(*, tolerance: float | None = None,
                budget_seconds: float | None = None):
    """The stage of ``mlsd features prune``: drop-one ablation of the spec's
    features on validation (see :func:`mlsd.models.prune`); ``tolerance`` and
    ``budget_seconds`` override the spec's ``feature_policy``."""

    def _settings(ctx: RunContext) -> dict[str, Any]:
        return {"problem": ctx.spec.problem, "model": ctx.spec.model,
                "policy": ctx.spec.feature_policy, "seed": ctx.spec.seed,
                "tolerance": tolerance, "budget": budget_seconds}

    @stage(name="prune", writes={"prune": "memory"}, settings=_settings)
    def prune_features(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
                       features: FeaturePipeline) -> StageResult:
        """Which features could go without lowering the validation metric
        beyond the tolerance, and what that saves at serving time."""
        from ._prune import prune
        from ._train import encode_target

        spec, problem = ctx.spec, ctx.spec.problem
        _settle_train_rows(ctx, features, training, splits)
        _, _, parts = split_parts(ctx, training, splits, label_columns(ctx))
        classes, _ = encode_target(problem,
                                   parts[TRAIN].column(problem.target).to_pylist())
        X, y = labelled_matrices(ctx, features, classes, training, splits)
        weights = train_weights(ctx, classes, training, splits)
        table = (ctx.summary.get("features") or {}).get("table") or []
        costs = {r["feature"]: r["us_per_row"] for r in table
                 if r.get("us_per_row") is not None}
        policy = spec.feature_policy
        result = prune(problem, spec.model, X=X, y=y, classes=classes,
                       blocks=features.block_slices(), costs=costs,
                       tolerance=policy.prune_tolerance if tolerance is None
                       else tolerance,
                       budget_seconds=policy.prune_budget_seconds
                       if budget_seconds is None else budget_seconds,
                       seed=spec.seed, weights=weights)
        return StageResult(
            outputs={"prune": result}, summary={"prune": result},
            note=f"{len(result['drop'])} of {result['of']} features could go "
                 f"(valid {result['metric']} {result['valid_all']} -> "
                 f"{result['valid_pruned']})")

    return prune_features


def search_stage(*, trials: int | None = None, seconds: float | None = None):
    """The stage of ``mlsd tune``: the spec's hyper-parameter search
    (``model.search``, or its defaults) on train and valid, and no final
    fit: the test split is not read. ``trials`` and ``seconds`` override the
    spec's."""
    from ..spec import SearchSpec

    def _search_spec(ctx: RunContext) -> SearchSpec:
        base = ctx.spec.model.search or SearchSpec()
        return base.model_copy(update={k: v for k, v in (
            ("trials", trials), ("seconds", seconds)) if v is not None})

    def _settings(ctx: RunContext) -> dict[str, Any]:
        return {"problem": ctx.spec.problem, "model": ctx.spec.model,
                "search": _search_spec(ctx), "seed": ctx.spec.seed,
                "imbalance": ctx.spec.imbalance}

    @stage(name="tune", writes={"search": "memory"}, settings=_settings)
    def tune(ctx: RunContext, training: DatasetRef, splits: DatasetRef,
             features: FeaturePipeline) -> StageResult:
        """Search the learner's parameters on the validation split."""
        from ._search import search
        from ._train import Augmented, encode_target

        spec, problem = ctx.spec, ctx.spec.problem
        _settle_train_rows(ctx, features, training, splits)
        _, _, parts = split_parts(ctx, training, splits, label_columns(ctx))
        classes, _ = encode_target(problem,
                                   parts[TRAIN].column(problem.target).to_pylist())
        X, y = labelled_matrices(ctx, features, classes, training, splits)
        extra = augmented_rows(ctx, features, parts[TRAIN], classes)
        added = Augmented(spec.augment, None if extra is None else extra[:3],
                          raw_resampled(ctx, features, parts[TRAIN], classes))
        wanted = _search_spec(ctx)
        model = spec.model.model_copy(update={"search": wanted})
        with ctx.reporter.stage(f"search ({wanted.trials} trials at most)",
                                total=wanted.trials) as step:
            _, report = search(problem, model, X=X, y=y, classes=classes,
                               seed=spec.seed,
                               weights=train_weights(ctx, classes, training,
                                                     splits),
                               imbalance=spec.imbalance, added=added,
                               progress=lambda done, value: step.advance(1))
        return StageResult(
            outputs={"search": report}, summary={"search": report},
            note=f"{report['trials']} trials: valid {report['metric']} "
                 f"{report['best_value']} (the spec's parameters: "
                 f"{report['spec_params_value']}); kept {report['chosen']}")

    return tune
