"""Models: ``mlsd models`` (list, show, the registry: promote, rollback,
aliases, compare), ``mlsd lineage``, ``mlsd predict`` and ``mlsd serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import MlsdError
from ._common import (
    ConfigOpt,
    JsonOpt,
    ModelOpt,
    RichReporter,
    TrustOpt,
    emit,
    err,
    fmt,
    group,
    out,
    project,
    rich_table,
)

app = group("The models trained so far; with no command, list them.",
            no_args_is_help=False, invoke_without_command=True)
top = group("", no_args_is_help=False)  # commands at the root
ModelIdArg = Annotated[str, typer.Argument(
    help="A model id (or a unique prefix), or an alias (champion).")]
AliasArg = Annotated[str, typer.Argument(help="The alias (default: champion).")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Why, kept in the alias history.")]


def _best(metric: str, values: list[float | None], higher: bool | None
          ) -> float | None:
    if higher is None:  # a model registered before the catalog kept it
        from ..models import PRIMARY

        higher = dict(PRIMARY.values()).get(metric, True)
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if higher else min(present)


def _model_rows(proj) -> list[dict[str, Any]]:
    rows = []
    held: dict[str, list[str]] = {}
    for name, entry in proj.catalog.aliases().items():
        held.setdefault(entry["artifact_id"], []).append(name)
    for a in proj.catalog.artifacts("model"):
        md = a["metadata"]
        primary = md["metrics"]["primary"]
        rows.append({
            "model_id": a["artifact_id"], "created_at": a["created_at"],
            "kind": md["kind"], "task": md["task"], "target": md["target"],
            "primary_metric": primary,
            "test": md["metrics"]["model"]["test"].get(primary),
            "best_baseline_test": _best(primary, [
                b["test"].get(primary) for b in md["metrics"]["baselines"].values()],
                md.get("primary_higher_is_better")),
            "datasets": [f"{d['dataset']}@{d['version']}" for d in
                         md["lineage"]["datasets"]],
            "run_id": a["run_id"], "path": a["path"],
            "aliases": sorted(held.get(a["artifact_id"], []))})
    return rows


def _show_models(rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.print("no model yet: run `mlsd run`")
        return
    t = rich_table("Models (metric on the test split)")
    for c in ("model id", "aliases", "created", "kind", "metric", "model",
              "best baseline"):
        t.add_column(c, no_wrap=True)
    for r in rows:
        t.add_row(r["model_id"], ", ".join(r["aliases"]), r["created_at"][:16],
                  r["kind"], r["primary_metric"], fmt(r["test"]),
                  fmt(r["best_baseline_test"]))
    out.print(t)
    last = rows[-1]
    out.print(f"latest {last['model_id']} read " + ", ".join(last["datasets"]))


@app.callback()
def models(ctx: typer.Context, config: ConfigOpt = None,
           as_json: JsonOpt = False) -> None:
    """List the models trained so far, their metrics and data versions.

    Examples:
      mlsd models --json
      mlsd models show m2024
    """
    if ctx.invoked_subcommand is None:
        emit(_model_rows(project(config)), as_json, _show_models)


@app.command("list")
def models_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the models trained so far (what `mlsd models` alone prints).

    Example: mlsd models list --json
    """
    emit(_model_rows(project(config)), as_json, _show_models)


@app.command("show")
def models_show(model_id: ModelIdArg, config: ConfigOpt = None,
                as_json: JsonOpt = False) -> None:
    """Show one model's manifest: task, learner and parameters, threshold,
    metrics on valid and test next to the baselines', inputs and data.

    Example: mlsd models show m20241201
    """
    import json

    proj = project(config)
    folder = proj.find_model(model_id)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))

    def show(m: dict[str, Any]) -> None:
        out.print(f"model {m['model_id']}: {m['kind']} for a {m['task']} task on "
                  f"{m['target']!r}, {m['n_features']} inputs, created "
                  f"{m['created_at'][:19]}")
        if m.get("params"):
            out.print(f"parameters: {m['params']}")
        if m.get("threshold") is not None:
            out.print(f"decision threshold {m['threshold']:.4f} (chosen on "
                      f"validation for {m['threshold_objective']})")
        metrics = m["metrics"]
        base = metrics["baselines"]
        names = sorted({k for part in ("valid", "test")
                        for k in metrics["model"][part]})
        names.sort(key=lambda n: n != metrics["primary"])  # primary first
        t = rich_table(f"Metrics (primary: {metrics['primary']}); baselines: "
                  + "; ".join(f"{b}: {v['description']}" for b, v in base.items()))
        for c in ("metric", "model (valid)", "model (test)",
                  *[f"{b} (test)" for b in base]):
            t.add_column(c, justify="left" if c == "metric" else "right")
        for n in names:
            t.add_row(n, fmt(metrics["model"]["valid"].get(n)),
                      fmt(metrics["model"]["test"].get(n)),
                      *[fmt(v["test"].get(n)) for v in base.values()])
        out.print(t)
        lin = m["lineage"]
        out.print("data: " + ", ".join(f"{d['dataset']}@{d['version']}"
                                       for d in lin["datasets"])
                  + f"; split {lin['split']['dataset']}@{lin['split']['version']}")
        out.print(f"folder: {folder.relative_to(proj.root)}")

    emit(manifest, as_json, show)


@app.command("promote")
def models_promote(
    model_id: ModelIdArg,
    alias: Annotated[str, typer.Option("--alias", help="The alias to point at "
                                       "the model.")] = "champion",
    reason: ReasonOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:
    """Point an alias (default: champion) at a model. `mlsd serve` and
    `mlsd predict` use the champion when no model is named; a running service
    picks it up at its next start.

    Examples:
      mlsd models promote m20241201-abc
      mlsd models promote challenger --alias champion --reason "beat it on May"
    """
    from ..pipeline import promote_model

    res = promote_model(project(config), model_id, alias, reason=reason)

    def show(r: dict[str, Any]) -> None:
        if not r["changed"]:
            out.print(f"{r['alias']} already points at {r['model_id']}")
        else:
            out.print(f"{r['alias']} -> {r['model_id']}"
                      + (f" (was {r['previous']})" if r["previous"] else ""))

    emit(res, as_json, show)


@app.command("rollback")
def models_rollback(alias: AliasArg = "champion", reason: ReasonOpt = None,
                    config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Undo an alias's last promotion: it points at the model it pointed at
    before (repeat to go further back).

    Example: mlsd models rollback champion --reason "alerts on the new model"
    """
    from ..pipeline import rollback_model

    res = rollback_model(project(config), alias, reason=reason)
    emit(res, as_json, lambda r: out.print(
        f"{r['alias']} -> {r['model_id']} (rolled back from {r['from']})"))


@app.command("aliases")
def models_aliases(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The aliases, the model each points at, and their history of
    promotions and rollbacks.

    Example: mlsd models aliases --json
    """
    from ..models import aliases

    res = aliases(project(config).catalog)

    def show(rows: list[dict[str, Any]]) -> None:
        if not rows:
            out.print("no alias yet: `mlsd models promote MODEL_ID` sets champion")
            return
        for r in rows:
            out.print(f"{r['alias']} -> {r['model_id']} since {r['since'][:19]}"
                      + (f" ({r['reason']})" if r["reason"] else "")
                      + (f"; test {r['metric']} {fmt(r['test'])}" if r["metric"]
                         else ""))
            for e in r["history"]:
                out.print(f"   {e['at'][:19]} {e['action']} -> {e['artifact_id']}"
                          + (" (undone)" if e["undone"] else "")
                          + (f": {e['reason']}" if e["reason"] else ""))

    emit(res, as_json, show)


@app.command("compare")
def models_compare(
    a: Annotated[str, typer.Argument(help="The model to compare with (an id, "
                                     "its start or an alias: champion).")],
    b: Annotated[str, typer.Argument(help="The model compared (an id, its start "
                                     "or an alias: challenger).")],
    on: Annotated[Path | None, typer.Option(
        "--on", help="A labelled file (CSV, JSONL, Parquet) to score both on "
        "(default: B's test rows less any A was fitted or tuned on).")] = None,
    replicates: Annotated[int | None, typer.Option(
        help="Bootstrap replicates (default: evaluation.replicates, at least "
        "200).")] = None,
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:
    """Two models on the same labelled rows: each metric with its interval,
    and the paired interval of B's margin over A on the primary metric.

    Examples:
      mlsd models compare champion m20241201-abc
      mlsd models compare champion challenger --on data/holdout_june.csv
    """
    from ..pipeline import compare_models

    res = compare_models(project(config), a, b, on=on, replicates=replicates)
    emit(res, as_json, show_comparison)


def show_comparison(r: dict[str, Any]) -> None:
    """A comparison as a table and its verdict (`mlsd models compare`)."""
    out.print(f"A = {r['a']}, B = {r['b']}: {r['task']} on {r['target']!r}, "
              f"{r['rows']} rows ({r['on']})")
    if r.get("excluded_seen_by_a"):
        out.print(f"{r['excluded_seen_by_a']} rows left out: A was fitted or tuned "
                  f"on them")
    if r.get("rejected"):
        out.print(f"{r['rejected']} rows of the file do not fit the input schema "
                  f"(not scored); first: line {r['rejected_rows'][0]['line']}: "
                  f"{'; '.join(r['rejected_rows'][0]['reasons'])}")
    t = rich_table(f"Metrics on the same rows ({int(r['margin']['level'] * 100)}% "
                   f"intervals)")
    for c in ("metric", "A", "A interval", "B", "B interval"):
        t.add_column(c, justify="left" if c == "metric" else "right")

    def iv(x: list[float] | None) -> str:
        return "" if not x else f"[{x[0]:.4f}, {x[1]:.4f}]"

    for name, m in r["metrics"].items():
        t.add_row(name, fmt(m["a"]), iv(m["a_interval"]), fmt(m["b"]),
                  iv(m["b_interval"]))
    out.print(t)
    mg = r["margin"]
    better = "higher" if r["higher_is_better"] else "lower"
    out.print(f"B - A on {mg['metric']} ({better} is better, signed so that > 0 "
              f"favours B): {fmt(mg['b_over_a'])} "
              f"{iv(mg['interval'])} ({mg['method']}, paired)")
    out.print(f"verdict: {r['verdict']}")


@app.command("export")
def models_export(
    model_id: ModelIdArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file "
                                         "to write (and FILE.json beside it).")],
    format_: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:
    """Export a model's learner to ONNX (its input: the feature vector, in the
    order FILE.json lists), checked against native scoring on the model's test
    rows. Needs `pip install 'mlsd[onnx]'`.

    Example: mlsd models export champion -o spam.onnx
    """
    from ..pipeline import export_model

    res = export_model(project(config), model_id, output, fmt=format_)

    def show(r: dict[str, Any]) -> None:
        p = r.get("parity")
        out.print(f"wrote {r['path']} ({r['kind']} {r['task']}, {r['n_features']} "
                  f"float32 inputs named in {r['path']}.json)"
                  + (f"; on {p['rows']} test rows: max gap {p['max_gap_float32']:.2g} "
                     f"on the same float32 inputs, {p['rows_moved']} rows moved by "
                     f"float32 rounding of the inputs (max {p['max_gap']:.2g})"
                     if p else ""))
        if r.get("parity_note"):
            err.print(r["parity_note"])

    emit(res, as_json, show)


@top.command()
def lineage(model_id: ModelIdArg, config: ConfigOpt = None,
            as_json: JsonOpt = False) -> None:
    """Walk from a model back to its dataset versions, loads and source files.

    Example: mlsd lineage m20241201-abc
    """
    proj = project(config)
    cat = proj.catalog
    art = cat.artifact(cat.alias(model_id) or model_id)  # an id, its start, an alias
    if art is None or art["kind"] != "model":
        raise MlsdError(f"no model {model_id!r} (or more than one matches); "
                        f"`mlsd models` lists them")
    edges = cat.upstream(f"model:{art['artifact_id']}")
    erasures = cat.erasures()

    def erased_since(dataset: str, version: int) -> list[dict[str, Any]]:
        # erasures that removed rows of this dataset after this version: the
        # version may hold them, and reading it may fail once vacuumed
        out = []
        for e in erasures:
            res = (e["result"].get("datasets") or {}).get(dataset) or {}
            if res.get("deleted") and res.get("version", -1) > version:
                out.append({"erasure_id": e["erasure_id"], "where": e["predicate"],
                            "deleted": res["deleted"], "at": e["created_at"]})
        return out

    datasets = []
    for d in art["metadata"]["lineage"]["datasets"]:
        loads = cat.loads_for(d["dataset"], d["version"])
        datasets.append({
            "dataset": d["dataset"], "version": d["version"],
            "erased_since": erased_since(d["dataset"], d["version"]),
            "rows_stored": d["rows"], "load_id": d["load_id"],
            "loads": [{"load_id": ld["load_id"], "rows_in": ld["rows_in"],
                       "rows_stored": ld["rows_stored"],
                       "rows_quarantined": ld["rows_quarantined"],
                       "quarantine": f"quarantine/{ld['source']}@"
                                     f"{ld['quarantine_version']}",
                       "files": ld["files"]} for ld in loads]})
    lin = art["metadata"]["lineage"]
    doc = {"model_id": art["artifact_id"], "path": art["path"],
           "run_id": art["run_id"], "spec_hash": lin["spec_hash"],
           "code_version": lin["code_version"], "training": lin.get("training"),
           "split": lin["split"], "datasets": datasets, "edges": edges,
           "rows": "every stored row carries _source, _source_sha256, _line and "
                   "_load_id"}

    def show(doc: dict[str, Any]) -> None:
        out.print(f"model {doc['model_id']}  (run {doc['run_id']}, spec "
                  f"{doc['spec_hash'][:12]}, mlsd {doc['code_version']})")
        sp = doc["split"]
        out.print(f"└─ split {sp['dataset']}@{sp['version']}: train {sp['train']}, "
                  f"valid {sp['valid']}, test {sp['test']}")
        if doc["training"]:
            tr = doc["training"]
            out.print(f"└─ training table {tr['dataset']}@{tr['version']}")
            lab = tr.get("labels")
            if lab:  # the target by labels.policy: which rule gave how many
                for rule, got in lab["by_rule"].items():
                    if rule == "column":
                        out.print(f"   └─ labels from the target column: "
                                  f"{got['rows']} rows")
                        continue
                    out.print(
                        f"   └─ labels from the label store's {rule} labels "
                        f"(labels/{doc['training']['dataset'].split('/')[-1]}@"
                        f"{lab['store_version']}, {got['aggregate']}, confidence "
                        f">= {got['min_confidence']}): {got['rows']} rows; "
                        f"{got['too_unsure']} too unsure")
        for d in doc["datasets"]:
            out.print(f"└─ trained on {d['dataset']}@{d['version']} "
                      f"({d['rows_stored']} rows)")
            for e in d["erased_since"]:
                out.print(f"   ! {e['deleted']} of its rows erased since "
                          f"({e['erasure_id']}, where {e['where']}): this "
                          f"version held them")
            for ld in d["loads"]:
                out.print(f"   └─ load {ld['load_id'][:12]}: {ld['rows_in']} rows "
                          f"read, {ld['rows_stored']} stored, "
                          f"{ld['rows_quarantined']} quarantined -> "
                          f"{ld['quarantine']}")
                for f in ld["files"]:
                    out.print(f"      └─ file {f['path']} sha256 {f['sha256']} "
                              f"({f.get('rows', '?')} rows, {f['size']} bytes)")

    emit(doc, as_json, show)


@top.command()
def predict(
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or JSONL rows.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write: "
                                         ".parquet, .csv or .jsonl.")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    trust_unregistered: TrustOpt = False,
    engine: Annotated[str | None, typer.Option(
        metavar="ENGINE", help="duckdb (here) or spark (the rows read, checked "
        "and scored as Spark tasks; default: the spec's engine).")] = None,
) -> None:
    """Score a file of raw rows with a model (the same path as serving).

    Examples:
      mlsd predict --input data/new_posts.csv --output scored.parquet
      mlsd predict -i new.jsonl -o scored.csv
      mlsd predict -i huge.csv -o scored.parquet --engine spark
    """
    from ..pipeline import score_file

    proj = project(config)
    folder = proj.find_model(model)
    spark = None
    if (engine or proj.spec.engine.kind) == "spark":
        from ..engine import SparkEngine

        spark = SparkEngine(proj.spec.engine.model_copy(update={"kind": "spark"}))
    elif engine not in (None, "duckdb"):
        raise MlsdError(f"--engine {engine!r}: expected duckdb or spark")
    with RichReporter(err) as rep:
        res = score_file(folder, input, output, reporter=rep,
                         trust_unregistered=trust_unregistered, engine=spark)

    def show(res: dict[str, Any]) -> None:
        out.print(f"scored {res['scored']} of {res['rows_in']} rows with model "
                  f"{res['model_version']} -> {res['output']}")
        if res["rejected"]:
            out.print(f"{res['rejected']} rows rejected, with reasons, -> "
                      f"{res['rejected_output']}")
        for w in res["warnings"]:
            err.print(f"warning: {w}")

    emit(res, as_json, show)


@top.command()
def serve(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_body_bytes: Annotated[int | None, typer.Option(
        help="Larger request bodies get 413 (default: serve.max_body_bytes in "
        "mlsd.yaml, 1 MiB).")] = None,
    threads: Annotated[int | None, typer.Option(
        help="Requests scored at once (default: serve.threads, or the cores "
        "this process may use).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes (default: serve.workers, 1); each logs its own "
        "batches, /metrics sums them.")] = None,
    grpc_port: Annotated[int | None, typer.Option(
        help="Serve the same predict over gRPC on this port too (default: "
        "serve.grpc_port; `mlsd models proto` prints the .proto).")] = None,
    trust_unregistered: TrustOpt = False,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Score rows from serve.stream's broker queue instead "
        "of serving HTTP (answers to reply_to or serve.stream.predictions).")
    ] = False,
    max_messages: Annotated[int | None, typer.Option(
        metavar="N", help="--stream: stop after N messages.")] = None,
    idle_seconds: Annotated[float | None, typer.Option(
        metavar="S", help="--stream: stop once no message came for S seconds."
    )] = None,
) -> None:
    """Serve a model over REST: POST /predict and /feedback, GET /health,
    /ready, /model, /metrics. With --stream, from a broker queue instead.

    Every prediction is logged to the project's prediction log (serve.log),
    and a model promoted meanwhile replaces the served one without a failed
    request (serve.reload_seconds). With MLSD_API_KEY set, every endpoint but
    /health and /ready wants it (X-API-Key or Authorization: Bearer); still,
    put the service behind TLS if others can reach it.

    Example: mlsd serve --port 8000 --workers 2
    """
    import json
    import os
    import shutil

    import uvicorn

    from ..serve._app import WORKER_ENV, project_app

    proj = project(config)
    folder, how = proj.which_model(model)
    overrides = {k: v for k, v in (("max_body_bytes", max_body_bytes),
                                   ("threads", threads), ("workers", workers),
                                   ("grpc_port", grpc_port))
                 if v is not None}
    settings = _serve_settings(proj.spec.serve, overrides)
    if stream:
        _serve_stream(proj, model, settings, folder, how, trust_unregistered,
                      max_messages, idle_seconds)
        return
    several = f" with {settings.workers} workers" if settings.workers > 1 else ""
    if settings.grpc_port is not None:
        several += f", gRPC on {host}:{settings.grpc_port}"
    err.print(f"serving model {folder.name} ({how}) on http://{host}:{port} "
              f"(docs at /docs){several}")
    if settings.workers == 1:
        application = project_app(proj, model, settings, host=host,
                                  trust_unregistered=trust_unregistered)
        uvicorn.run(application, host=host, port=port, log_level="warning")
        return
    # several processes: each builds its own app from what is passed here,
    # and Prometheus' multiprocess files let any of them answer for all
    metrics_dir = proj.home / "tmp" / f"metrics-{os.getpid()}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ[WORKER_ENV] = json.dumps({
        "config": str(proj.spec_path), "set": proj.overrides, "model": model,
        "overrides": overrides, "trust": trust_unregistered, "host": host})
    try:
        uvicorn.run("mlsd.serve._app:app_from_env", factory=True,
                    workers=settings.workers, host=host, port=port,
                    log_level="warning")
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve_stream(proj, model, settings, folder, how, trust_unregistered,
                  max_messages, idle_seconds) -> None:
    import json

    from ..serve._stream import project_stream

    if settings.stream is not None:
        err.print(f"scoring model {folder.name} ({how}) from "
                  f"{settings.stream.broker}#{settings.stream.queue}, answers to "
                  f"reply_to or {settings.stream.predictions}")
    res = project_stream(proj, model, settings,
                         trust_unregistered=trust_unregistered,
                         max_messages=max_messages, idle_seconds=idle_seconds,
                         handle_signals=True)
    out.print(json.dumps(res))


@top.command()
def tune(
    trials: Annotated[int | None, typer.Option(
        help="Trials at most (default: model.search.trials, 30).")] = None,
    seconds: Annotated[float | None, typer.Option(
        help="The time box in seconds (default: model.search.seconds, 300).")] = None,
    write: Annotated[Path | None, typer.Option(
        help="Write the spec with the chosen model.params to this file (next to "
             "mlsd.yaml, which is left as it is).")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the learner's parameters on the validation split (Optuna TPE,
    time-boxed); the test split is not read. The spec's own parameters are
    scored first and kept when no trial beats them.

    Examples:
      mlsd tune --trials 50 --seconds 120
      mlsd tune --write mlsd.tuned.yaml && mlsd run -c mlsd.tuned.yaml
    """
    from ..pipeline import tune as run_tune

    with RichReporter(err) as rep:
        summary = run_tune(project(config), trials=trials, seconds=seconds,
                           write=write, reporter=rep)
    emit(summary["search"], as_json, show_search)


def show_search(r: dict[str, Any]) -> None:
    """What a search did (`mlsd tune`)."""
    better = "higher" if r["higher_is_better"] else "lower"
    out.print(f"{r['trials']} of {r['trials_asked']} trials in {r['seconds']:.1f} s "
              f"(stopped by {r['stopped_by']}), {r['sampler']}, on {r['on']} "
              f"{r['metric']} ({better} is better)")
    t = rich_table("Best trials")
    keys = list(r["space"])
    for c in ("trial", r["metric"], *keys):
        t.add_column(c, justify="right")
    ranked = sorted(r["history"], key=lambda h: h["value"],
                    reverse=r["higher_is_better"])[:8]
    for h in ranked:
        t.add_row(str(h["trial"]), fmt(h["value"]),
                  *[fmt(h["params"].get(k)) for k in keys])
    out.print(t)
    out.print(f"the spec's own parameters: {fmt(r['spec_params_value'])}; best "
              f"trial: {fmt(r['best_value'])}; kept {r['chosen']}: {r['params']}")
    if r.get("written"):
        out.print(f"wrote {r['written']}")


@top.command()
def track(
    run_id: Annotated[str | None, typer.Argument(
        help="A run id or its start (default: the last finished run).")] = None,
    uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: tracking.mlflow_uri in mlsd.yaml), "
             "for example sqlite:///mlflow.db.")] = None,
    experiment: Annotated[str | None, typer.Option(
        help="MLflow experiment (default: tracking.experiment, else the project "
             "name).")] = None,
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:
    """Log a recorded run to MLflow: parameters, metrics with their intervals,
    mlsd's ids as tags, the report and the model manifest. `mlsd run` does it
    itself when tracking.mlflow_uri is set. Needs `pip install 'mlsd[mlflow]'`.

    Example: mlsd track --uri sqlite:///mlflow.db
    """
    from ..pipeline import track_run

    res = track_run(project(config), run_id, uri=uri, experiment=experiment)
    emit(res, as_json, lambda r: out.print(
        f"logged to MLflow run {r['mlflow_run_id']} in experiment "
        f"{r['experiment']!r} ({r['params']} parameters, {r['metrics']} metrics) "
        f"at {r['uri']}"))


@top.command()
def monitor(
    since: Annotated[str | None, typer.Option(
        help="How far back the prediction log is read (default: monitor.since, "
        "7d).")] = None,
    window: Annotated[str | None, typer.Option(
        help="Windows of the figures over time (default: monitor.window, 1d).")
    ] = None,
    model: ModelOpt = None,
    report: Annotated[bool, typer.Option(
        "--report/--no-report", help="Write the HTML report (.mlsd/reports/).")
    ] = True,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Served traffic against the model's training rows: each input's drift
    (PSI, KS, chi-squared, unseen categories, missing rates), the
    prediction's, the same over time, and the live metrics once natural
    labels arrive. Exits 1 when a threshold (monitor.thresholds) is passed:
    for a cron job or CI.

    Example: mlsd monitor --since 24h --window 1h
    """
    from ..pipeline import monitor as run_monitor

    doc = run_monitor(project(config), since=since, window=window, model=model,
                      report=report)

    def show(d: dict[str, Any]) -> None:
        out.print(f"model {d['model']} ({d['model_chosen']}): {d['rows']} served rows "
                  f"since {d['since'][:19]}, against {d['reference_rows']} training "
                  f"rows: {d['status']}"
                  + (f" ({d['why']})" if d.get("why") else ""))
        if d.get("inputs"):
            t = rich_table("Each input (served against training)")
            for c in ("input", "kind", "missing", "PSI", "KS", "JS", "Cramér's V",
                      "unseen"):
                t.add_column(c, justify="left" if c in ("input", "kind") else "right")
            for c, s in d["inputs"].items():
                t.add_row(c, s["kind"], f"{s['missing_train']:.1%} -> "
                          f"{s['missing_test']:.1%}", _num(s.get("psi")),
                          _num(s.get("ks")), _num(s.get("js")),
                          _num(s.get("cramers_v")), _num(s.get("unseen_share")))
            out.print(t)
        p = d.get("prediction")
        if p:
            out.print(f"prediction: PSI {_num(p.get('psi'))}"
                      + (f", mean {p['reference_mean']} on test -> "
                         f"{p['served_mean']} served" if "served_mean" in p else ""))
        live = d.get("live") or {}
        if live:
            out.print(f"live: {live.get('labelled', 0)} naturally labelled rows"
                      + (f"; {live['primary']} {live['served']} (test "
                         f"{live['test']})" if live.get("primary") else "")
                      + (f" ({live['why']})" if live.get("why") else ""))
        for a in d.get("alerts", []):
            out.print(f"alert {a['check']}"
                      + (f" {', '.join(a['columns'])}" if a.get("columns") else "")
                      + f": {a['message']}")
        if d.get("report"):
            out.print(f"Report: {d['report']}")
    emit(doc, as_json, show)
    if doc["status"] == "alert":
        raise typer.Exit(1)


def _num(v: Any) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


@app.command("proto")
def proto_cmd(
    model: Annotated[str | None, typer.Argument(
        help="A model id, its start, or an alias (default: the one served).")
    ] = None,
    config: ConfigOpt = None,
    trust_unregistered: TrustOpt = False,
) -> None:
    """Print the .proto of a model's gRPC service (`mlsd serve --grpc-port`):
    a Row message from its input schema, Predict and Feedback.

    Example: mlsd models proto champion > model.proto
    """
    import sys

    from ..models import ModelArtifact
    from ..serve._grpc import model_proto

    folder, _ = project(config).which_model(model)
    art = ModelArtifact.load(folder, trust_unregistered=trust_unregistered)
    sys.stdout.write(model_proto(art.input_schema, art.model_id))


def _serve_settings(spec, overrides: dict[str, Any]):
    """The spec's serve settings with the command line's, checked as the
    spec's are (a port past 65535 is said, not served)."""
    from pydantic import ValidationError

    try:
        return type(spec).model_validate({**spec.model_dump(), **overrides})
    except ValidationError as exc:
        e = exc.errors()[0]
        raise MlsdError(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}") from None
