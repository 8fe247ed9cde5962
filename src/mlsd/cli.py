"""The ``mlsd`` command: a thin face over :mod:`mlsd.pipeline` and the stages.

Results go to stdout (``--json`` for scripts), progress and logs to stderr.
Exit codes: 0 done, 1 the job ran and found a problem asked to fail on, 2 bad
input or usage (every :class:`mlsd.errors.MlsdError` is printed as one line of
text, never a traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from . import __version__
from .errors import MlsdError

app = typer.Typer(
    name="mlsd",
    help="ML system design: from raw data to a served model, every step traceable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
spec_app = typer.Typer(help="Check the project spec (mlsd.yaml) or print its "
                       "JSON Schema.", no_args_is_help=True)
lake_app = typer.Typer(help="Retention and erasure in the lake.",
                       no_args_is_help=True)
quarantine_app = typer.Typer(help="Rows rejected by validation, with their "
                             "reasons.", no_args_is_help=True)
schema_app = typer.Typer(help="The data schemas of the sources.",
                         no_args_is_help=True)
app.add_typer(spec_app, name="spec")
app.add_typer(schema_app, name="schema")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(lake_app, name="lake")

def _width(stream) -> int | None:
    # Piped output is not cut at 80 columns: tables stay readable in logs.
    return None if stream.isatty() else int(os.environ.get("COLUMNS", "120"))


# markup off: data (reasons, file names, messages) may hold square brackets
out = Console(highlight=False, markup=False, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, markup=False, width=_width(sys.stderr))

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="The spec file (default: mlsd.yaml here or in a parent).",
    dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


class RichReporter:
    """Pipeline progress on stderr: live bars on a terminal, plain lines else."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[note]}", markup=False), console=console,
            disable=not self.live)
        self._task = None
        self._note = ""

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[RichReporter]:
        self._task = self.progress.add_task(name, total=total, note="")
        self._note = ""
        started = time.perf_counter()
        try:
            yield self
        finally:
            secs = time.perf_counter() - started
            self.progress.update(self._task, total=self.progress.tasks[
                self._task].completed or 1, completed=self.progress.tasks[
                self._task].completed or 1)
            if not self.live:
                note = f": {self._note}" if self._note else ""
                self.console.print(f"{name} ({secs:.1f}s){note}")

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self.progress.advance(self._task, n)

    def note(self, text: str) -> None:
        self._note = text
        if self._task is not None:
            self.progress.update(self._task, note=text)


def _project(config: Path | None):
    from .pipeline import Project

    return Project.find(spec=config) if config else Project.find()


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, default=str) + "\n")


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="The project folder to create.")],
    example: Annotated[str, typer.Option(help="The example to write.")] =
    "forum-spam",
    force: Annotated[bool, typer.Option(help="Write into a folder that already "
                                        "holds a project.")] = False,
) -> None:
    """Create a project folder with mlsd.yaml, raw data and declared schemas.

    Example: mlsd init demo --example forum-spam
    """
    from .examples import write

    if (folder / "mlsd.yaml").exists() and not force:
        raise MlsdError(f"{folder}/mlsd.yaml already exists; pass --force to "
                        f"overwrite the example's files")
    manifest = write(example, folder)
    rows = sum(manifest["rows"].values())
    err.print(f"wrote example {example!r} to {folder}/: {rows} posts in "
              f"{len(manifest['rows'])} files, {len(manifest['defects'])} planted "
              f"defects (data/defects.json)")
    out.print(f"next: cd {folder} && mlsd run")


@app.command("run")
def run_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Run the whole pipeline: ingest, validate, lake, split, features, train,
    audit, report.

    Example: mlsd run --json > summary.json
    """
    from .pipeline import run

    project = _project(config)
    with RichReporter(err) as rep:
        summary = run(project, reporter=rep)
    if as_json:
        _print_json(summary)
        return
    _print_summary(summary)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def _sources_table(title: str, sources: list[dict[str, Any]], *,
                   reasons: bool = False, total: dict[str, int] | None = None
                   ) -> Table:
    """Per source: rows read, stored, quarantined, and the dataset version."""
    t = Table(title=title, title_justify="left")
    cols = ["source", "read", "stored", "quarantined", "dataset version"]
    for c in cols + (["top reasons"] if reasons else []):
        t.add_column(c, justify="right" if c in ("read", "stored", "quarantined")
                     else "left", no_wrap=c != "top reasons")
    for src in sources:
        version = f"{src['dataset']}@{src['version']}" + (
            " (nothing new)" if src["skipped"] else "")
        cells = [src["source"], str(src["rows_in"]), str(src["rows_stored"]),
                 str(src["rows_quarantined"]), version]
        if reasons:
            cells.append(", ".join(f"{k} ({v})" for k, v in
                                   list(src["reasons"].items())[:3]))
        t.add_row(*cells)
    if total is not None:
        t.add_row("total", str(total["rows_in"]), str(total["rows_stored"]),
                  str(total["rows_quarantined"]), "", *([""] if reasons else []))
    return t


def _print_summary(s: dict[str, Any]) -> None:
    tot = s["totals"]
    out.print(_sources_table(f"Data ({s['project']}, run {s['run_id']})",
                             s["sources"], total=tot))
    if s["top_reasons"]:
        out.print("Top quarantine reasons: " + ", ".join(
            f"{k} ({v})" for k, v in s["top_reasons"]))
    sp = s["split"]
    sizes = ", ".join(f"{k} {v}" for k, v in sp["sizes"].items())
    out.print(f"Split ({sp['strategy']}{' on ' + sp['time'] if sp['time'] else ''}):"
              f" {sizes}")
    m = s["model"]
    names = s["metric_names"]
    mt = Table(title=f"Test metrics: model {m['model_id']} ({m['kind']}) vs "
               f"baselines", title_justify="left")
    mt.add_column("")
    for n in names:
        mt.add_column(n, justify="right")
    mt.add_row("model", *[_fmt(m["metrics"]["model"]["test"].get(n)) for n in names])
    for b in m["metrics"]["baselines"].values():
        mt.add_row(b["description"], *[_fmt(b["test"].get(n)) for n in names])
    out.print(mt)
    if m["threshold"] is not None:
        out.print(f"Decision threshold {m['threshold']:.4f} (chosen on validation "
                  f"for {m['threshold_objective']}).")
    if m["beats_baselines"] is False:
        out.print("The model does not beat the best baseline.", style="bold red")
    for f in s["audit"]:
        out.print(f"audit [{f['severity']}] {f['check']} {f['columns']}: "
                  f"{f['message']}")
    out.print(f"Report: {s['paths']['report']}")
    out.print(f"Model:  {s['paths']['model']}")
    out.print(f"Took {s['seconds']:.1f} s.")


@app.command()
def ingest(
    sources: Annotated[list[str] | None, typer.Argument(
        help="Sources to load (default: all).")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load sources into the lake: extract, validate, quarantine, commit.

    Example: mlsd ingest orders --json
    """
    from .pipeline import ingest as run_ingest

    project = _project(config)
    with RichReporter(err) as rep:
        res = run_ingest(project, sources=sources, reporter=rep)
    if as_json:
        _print_json(res)
        return
    out.print(_sources_table("Ingest", res["sources"], reasons=True))


@app.command("sql")
def sql_cmd(
    query: Annotated[str, typer.Argument(help="A SQL query; each source is a view.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="Rows to print at most.")] = 50,
) -> None:
    """Query the lake with SQL (DuckDB), each source's latest version as a view.

    Example: mlsd sql "SELECT status, count(*) FROM orders GROUP BY status"
    """
    from .pipeline import sql

    table = sql(_project(config), query)
    if as_json:
        _print_json(table.slice(0, limit).to_pylist())
        return
    t = Table(title=f"{table.num_rows} rows", title_justify="left")
    for name in table.column_names:
        t.add_column(name)
    for row in table.slice(0, limit).to_pylist():
        t.add_row(*[_fmt(v) for v in row.values()])
    out.print(t)


@app.command()
def serve(
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="Model id (default: the "
                                              "latest).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve a model over REST: POST /predict, GET /health, /ready, /model.

    Example: mlsd serve --port 8000
    """
    import uvicorn

    from .serve import create_app

    project = _project(config)
    folder = project.find_model(model)
    application = create_app(folder)
    err.print(f"serving model {folder.name} on http://{host}:{port} "
              f"(docs at /docs)")
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command()
def predict(
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or JSONL rows.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to "
                                         "write.")],
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="Model id (default: the "
                                              "latest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a file of raw rows with a model (the same path as serving).

    Example: mlsd predict --input data/new_posts.csv --output scored.parquet
    """
    from .pipeline import score_file

    project = _project(config)
    folder = project.find_model(model)
    with RichReporter(err) as rep:
        res = score_file(folder, input, output, reporter=rep)
    if as_json:
        _print_json(res)
        return
    out.print(f"scored {res['scored']} of {res['rows_in']} rows with model "
              f"{res['model_version']} -> {res['output']}")
    if res["rejected"]:
        out.print(f"{res['rejected']} rows rejected, with reasons, -> "
                  f"{res['rejected_output']}")


def _best(metric: str, values: list[float | None]) -> float | None:
    from .models import PRIMARY

    higher = dict(PRIMARY.values()).get(metric, True)
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if higher else min(present)


@app.command()
def models(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the models trained so far, their metrics and data versions.

    Example: mlsd models --json
    """
    project = _project(config)
    arts = project.catalog.artifacts("model")
    rows = []
    for a in arts:
        md = a["metadata"]
        primary = md["metrics"]["primary"]
        rows.append({
            "model_id": a["artifact_id"], "created_at": a["created_at"],
            "kind": md["kind"], "task": md["task"], "target": md["target"],
            "primary_metric": primary,
            "test": md["metrics"]["model"]["test"].get(primary),
            "best_baseline_test": _best(primary, [
                b["test"].get(primary) for b in md["metrics"]["baselines"].values()]),
            "datasets": [f"{d['dataset']}@{d['version']}" for d in
                         md["lineage"]["datasets"]],
            "run_id": a["run_id"], "path": a["path"]})
    if as_json:
        _print_json(rows)
        return
    if not rows:
        out.print("no model yet: run `mlsd run`")
        return
    t = Table(title="Models (metric on the test split)", title_justify="left")
    for c in ("model id", "created", "kind", "metric", "model", "best baseline"):
        t.add_column(c, no_wrap=True)
    for r in rows:
        t.add_row(r["model_id"], r["created_at"][:16], r["kind"],
                  r["primary_metric"], _fmt(r["test"]), _fmt(r["best_baseline_test"]))
    out.print(t)
    last = rows[-1]
    out.print(f"latest {last['model_id']} read " + ", ".join(last["datasets"]))


@app.command()
def lineage(
    model_id: Annotated[str, typer.Argument(help="A model id (or a unique prefix).")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Walk from a model back to its dataset versions, loads and source files.

    Example: mlsd lineage m20241201-abc
    """
    project = _project(config)
    art = project.catalog.artifact(model_id)
    if art is None or art["kind"] != "model":
        raise MlsdError(f"no model {model_id!r} (or more than one matches); "
                        f"`mlsd models` lists them")
    cat = project.catalog
    node = f"model:{art['artifact_id']}"
    edges = cat.upstream(node)
    datasets = []
    for d in art["metadata"]["lineage"]["datasets"]:
        loads = cat.loads_for(d["dataset"], d["version"])
        datasets.append({
            "dataset": d["dataset"], "version": d["version"],
            "rows_stored": d["rows"], "load_id": d["load_id"],
            "loads": [{"load_id": ld["load_id"], "rows_in": ld["rows_in"],
                       "rows_stored": ld["rows_stored"],
                       "rows_quarantined": ld["rows_quarantined"],
                       "quarantine": f"quarantine/{ld['source']}@"
                                     f"{ld['quarantine_version']}",
                       "files": ld["files"]} for ld in loads]})
    doc = {"model_id": art["artifact_id"], "path": art["path"],
           "run_id": art["run_id"], "spec_hash": art["metadata"]["lineage"][
               "spec_hash"], "code_version": art["metadata"]["lineage"][
               "code_version"], "split": art["metadata"]["lineage"]["split"],
           "datasets": datasets, "edges": edges,
           "rows": "every stored row carries _source, _source_sha256, _line and "
                   "_load_id"}
    if as_json:
        _print_json(doc)
        return
    out.print(f"model {doc['model_id']}  (run {doc['run_id']}, spec "
              f"{doc['spec_hash'][:12]}, mlsd {doc['code_version']})")
    sp = doc["split"]
    out.print(f"└─ split {sp['dataset']}@{sp['version']}: train {sp['train']}, "
              f"valid {sp['valid']}, test {sp['test']}")
    for d in datasets:
        out.print(f"└─ trained on {d['dataset']}@{d['version']} "
                  f"({d['rows_stored']} rows)")
        for ld in d["loads"]:
            out.print(f"   └─ load {ld['load_id'][:12]}: {ld['rows_in']} rows read, "
                      f"{ld['rows_stored']} stored, {ld['rows_quarantined']} "
                      f"quarantined -> {ld['quarantine']}")
            for f in ld["files"]:
                out.print(f"      └─ file {f['path']} sha256 {f['sha256']} "
                          f"({f.get('rows', '?')} rows, {f['size']} bytes)")


@app.command()
def export(
    dataset: Annotated[str, typer.Argument(help="A lake dataset: a source name, or "
                                           "AREA/NAME (sources, quarantine, "
                                           "splits).")],
    format: Annotated[str, typer.Option("--format", "-f", help="csv, jsonl, json, "
                                        "parquet, avro, protobuf or pickle.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to "
                                                "write (default: exports/ in the "
                                                "project).")] = None,
    version: Annotated[int | None, typer.Option(help="Dataset version (default: "
                                                "the latest).")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a lake dataset in any format mlsd reads.

    Example: mlsd export posts_export --format avro
    """
    from .etl import EXTENSIONS, export_dataset, parse_dataset
    from .formats import get_format

    get_format(format)  # refuse an unknown format before reading anything
    project = _project(config)
    area, name = parse_dataset(dataset)
    if output is None:
        from .lake import check_name, inside

        output = inside(project.root, "exports",
                        f"{area}-{check_name(name)}{EXTENSIONS[format]}")
    res = export_dataset(project.lake, dataset, format, output, version=version)
    if as_json:
        _print_json(res)
        return
    out.print(f"wrote {res['rows']} rows of {res['dataset']}@{res['version']} as "
              f"{format} -> {res['output']}")


@app.command()
def audit(
    target: Annotated[str, typer.Option(help="The label column.")],
    train: Annotated[Path | None, typer.Option(help="Training rows: a file in any "
                                               "format mlsd reads.")] = None,
    test: Annotated[Path | None, typer.Option(help="Test rows (never used to fit "
                                              "anything).")] = None,
    data: Annotated[Path | None, typer.Option(help="One file to split (with "
                                              "--split) instead of TRAIN/TEST.")
                    ] = None,
    split: Annotated[str | None, typer.Option(help="How to split DATA: random, "
                                              "stratified, time:COL or group:COL."
                                              )] = None,
    time_column: Annotated[str | None, typer.Option(
        "--time", help="The prediction-time column: rows are ordered by it.")
        ] = None,
    group: Annotated[str | None, typer.Option(
        help="An entity key (patient, user) that must not span the splits.")
        ] = None,
    allow_shared: Annotated[list[str] | None, typer.Option(
        "--allow-shared", help="An entity that may legitimately be in both splits "
        "(repeatable).")] = None,
    task: Annotated[str | None, typer.Option(
        help="binary, multiclass or regression (default: from the target).")
        ] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write the findings as JSON to this file ('-': stdout).")
        ] = None,
    html_path: Annotated[Path | None, typer.Option(
        "--html", help="Write the audit as one self-contained HTML report.")
        ] = None,
    fail_on: Annotated[str | None, typer.Option(
        help="Exit 1 when a finding of this severity or worse exists: low, "
        "medium or high.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and samples.")] = 0,
) -> None:
    """Audit a train/test pair for leakage and generalisation.

    Examples:
      mlsd audit --train train.parquet --test test.parquet --target label
      mlsd audit --data all.csv --target churned --split time:signup_at --fail-on high
    """
    from .audit import SEVERITIES, audit_pair, split_table
    from .etl import read_table

    if fail_on is not None and fail_on not in SEVERITIES:
        raise MlsdError(f"--fail-on: expected one of {', '.join(SEVERITIES)}, got "
                        f"{fail_on!r}")
    if task is not None and task not in ("binary", "multiclass", "regression"):
        raise MlsdError(f"--task: expected binary, multiclass or regression, got "
                        f"{task!r}")
    read_notes = []

    def load(path: Path):
        res = read_table(path)
        if res.broken_records or res.bad_values:
            read_notes.append({"file": str(path), "broken_records":
                               res.broken_records, "bad_values": res.bad_values})
        return res.table

    if data is not None:
        if train is not None or test is not None:
            raise MlsdError("give either --data (with --split) or --train and "
                            "--test, not both")
        if split is None:
            raise MlsdError("--data needs --split: random, stratified, time:COL "
                            "or group:COL")
        train_t, test_t, implied = split_table(load(data), split, target=target,
                                               seed=seed)
        time_column = time_column or implied["time"]
        group = group or implied["group"]
    else:
        if train is None or test is None:
            raise MlsdError("give --train and --test (or --data with --split)")
        if split is not None:
            raise MlsdError("--split goes with --data, not with --train/--test")
        train_t, test_t = load(train), load(test)
    with err.status("auditing"):
        result = audit_pair(train_t, test_t, target=target, task=task,
                            time_column=time_column, group=group,
                            allow_shared=allow_shared or [], seed=seed)
    doc = result.to_dict()
    doc["read"] = read_notes
    if json_path is not None:
        text = json.dumps(doc, indent=2, default=str)
        if str(json_path) == "-":
            sys.stdout.write(text + "\n")
        else:
            json_path.write_text(text + "\n", encoding="utf-8")
    if html_path is not None:
        from .report import render_audit

        render_audit(doc, html_path)
    if json_path is None or str(json_path) != "-":
        _print_findings(result, read_notes)
        if html_path is not None:
            out.print(f"report: {html_path}")
    if fail_on is not None and result.fails(fail_on):
        raise typer.Exit(1)


def _print_findings(result, read_notes: list[dict]) -> None:
    rows = result.rows
    out.print(f"audit of {rows['train']:,} train and {rows['test']:,} test rows, "
              f"target {result.target} ({result.task})")
    for note in read_notes:
        out.print(f"  {note['file']}: {note['broken_records']} broken records left "
                  f"out, unparseable values set to null: {note['bad_values']}")
    if not result.findings:
        out.print("no finding")
        return
    t = Table(title="Findings", title_justify="left")
    t.add_column("severity")
    t.add_column("check")
    t.add_column("columns")
    t.add_column("what it means")
    for f in result.findings:
        t.add_row(f.severity, f.check, ", ".join(f.columns), f.message)
    out.print(t)


@lake_app.command("vacuum")
def lake_vacuum(
    config: ConfigOpt = None,
    retention_hours: Annotated[int | None, typer.Option(
        help="Override the spec's lake.retention_hours (0: only the latest "
        "version stays readable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the files that only versions older than the retention need.

    Example: mlsd lake vacuum --retention-hours 0
    """
    from .pipeline import vacuum

    res = vacuum(_project(config), retention_hours)
    if as_json:
        _print_json(res)
        return
    for r in res:
        out.print(f"{r['dataset']}: {r['files_removed']} files removed (retention "
                  f"{r['retention_hours']} h)")


@lake_app.command("delete")
def lake_delete(
    source: Annotated[str, typer.Argument(help="A source name from mlsd.yaml.")],
    where: Annotated[str, typer.Option(help="SQL predicate of the rows to erase, "
                                       "e.g. \"author_id = 'u000123'\".")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase rows (say, one person's data) from a source's dataset and its
    quarantine; vacuum afterwards to erase them from old versions too.

    Example: mlsd lake delete posts_log --where "author_id = 'u000123'"
    """
    from .pipeline import delete_rows

    res = delete_rows(_project(config), source, where)
    if as_json:
        _print_json(res)
        return
    q = res.get("quarantine", {"deleted": 0})
    out.print(f"deleted {res['dataset']['deleted']} rows from sources/{source} "
              f"(now @{res['dataset']['version']}) and {q['deleted']} from its "
              f"quarantine; old versions keep them until `mlsd lake vacuum`")


@quarantine_app.command("show")
def quarantine_show(
    source: Annotated[str, typer.Argument(help="A source name from mlsd.yaml.")],
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="Rows to show at most.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List a source's rejected rows: file, line, every reason, the raw record.

    Example: mlsd quarantine show posts_log --limit 10
    """
    from .etl import quarantine_rows

    project = _project(config)
    rows = quarantine_rows(project.lake, source, limit=limit)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        out.print(f"quarantine of {source} is empty")
        return
    t = Table(title=f"Quarantine of {source} (first {len(rows)})",
              title_justify="left", show_lines=True)
    for c in ("file", "line", "reasons", "raw record"):
        t.add_column(c, overflow="fold")
    for r in rows:
        reasons = "\n".join(x["message"] for x in r["reasons"])
        raw = (r["raw"] or "")[:160]
        t.add_row(r["_source"], str(r["_line"]), reasons, raw)
    out.print(t)


@quarantine_app.command("replay")
def quarantine_replay(
    source: Annotated[str, typer.Argument(help="A source name from mlsd.yaml.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a source's quarantined rows again, after fixing the schema,
    the rules or the data; rows that pass join the dataset.

    Example: mlsd quarantine replay posts_log
    """
    from .pipeline import replay_quarantine

    res = replay_quarantine(_project(config), source)
    if as_json:
        _print_json(res)
        return
    out.print(f"replayed {res['replayed']} rows of {source}: {res['accepted']} "
              f"accepted (sources/{source}@{res['version']}), "
              f"{res['still_quarantined']} still quarantined "
              f"(quarantine/{source}@{res['quarantine_version']})"
              + (" (already replayed: nothing changed)" if res["skipped"] else ""))


@spec_app.command("check")
def spec_check(config: ConfigOpt = None) -> None:
    """Validate mlsd.yaml; print what is wrong, with its path in the file.

    Example: mlsd spec check -c other.yaml
    """
    project = _project(config)
    s = project.spec
    out.print(f"{project.spec_path}: valid ({len(s.sources)} sources, "
              f"{len(s.features)} features, task {s.problem.task} on "
              f"{s.problem.target!r})")


@spec_app.command("schema")
def spec_schema() -> None:
    """Print the JSON Schema of mlsd.yaml, for editors.

    Example: mlsd spec schema > mlsd.schema.json
    """
    from .spec import json_schema

    _print_json(json_schema())


@schema_app.command("show")
def schema_show(
    source: Annotated[str, typer.Argument(help="A source name from mlsd.yaml.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a source's schema (frozen in schemas/SOURCE.yaml, or inferred now).

    Example: mlsd schema show posts_export
    """
    from .etl import resolve_schema, schema_path, type_label

    project = _project(config)
    spec = project.spec
    if source not in spec.sources:
        raise MlsdError(f"unknown source {source!r}; sources are "
                        f"{', '.join(spec.sources)}")
    path = schema_path(project.root, source)
    frozen = path.is_file()
    schema, _ = resolve_schema(source, spec.sources[source], spec.validate_,
                               project.root, freeze=False)
    if as_json:
        _print_json({"source": source, "frozen": frozen,
                     "path": str(path.relative_to(project.root)),
                     "columns": schema.columns})
        return
    state = (f"frozen in {path.relative_to(project.root)}" if frozen else
             "inferred now (frozen on the next run)")
    t = Table(title=f"Schema of {source} ({state})", title_justify="left")
    t.add_column("column")
    t.add_column("type")
    t.add_column("rules")
    rules = spec.validate_
    for c, typ in schema.columns.items():
        r = []
        if c in rules.required:
            r.append("required")
        if c in rules.ranges:
            r.append(f"range {list(rules.ranges[c])}")
        if c in rules.allowed:
            r.append(f"allowed {rules.allowed[c]}")
        t.add_row(c, type_label(typ), ", ".join(r))
    out.print(t)


@schema_app.command("infer")
def schema_infer(
    source: Annotated[str, typer.Argument(help="A source name from mlsd.yaml.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Infer a source's schema again from its data and freeze it.

    The previous schemas/SOURCE.yaml is kept as SOURCE.yaml.bak; the columns
    whose type changed are listed. The next load validates against the new one.

    Example: mlsd schema infer posts_export
    """
    from .etl import reinfer_schema

    project = _project(config)
    if source not in project.spec.sources:
        raise MlsdError(f"unknown source {source!r}; sources are "
                        f"{', '.join(project.spec.sources)}")
    result = reinfer_schema(source, project.spec.sources[source],
                            project.spec.validate_, project.root)
    if as_json:
        _print_json(result)
        return
    out.print(f"schema of {source} frozen in {result['path']}"
              + (f" (previous kept in {result['backup']})" if result["backup"]
                 else ""))
    if not result["changes"]:
        out.print("no column changed")
    for c in result["changes"]:
        out.print(f"  {c['column']}: {c['before'] or '(new)'} -> "
                  f"{c['after'] or '(gone)'}")


def _version(value: bool) -> None:
    if value:
        out.print(f"mlsd {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version.")] = False) -> None:
    """mlsd: ML system design, data first."""


def main() -> None:
    """Console entry point: run the app, turn mlsd errors into exit code 2.

    The process ends with ``os._exit`` once the output is flushed: the native
    thread pools of Arrow, DuckDB and delta-rs can abort the interpreter's own
    teardown ("terminate called without an active exception", exit -6; see
    apache/arrow#34314, delta-io/delta-rs#2184) after the work is done, which
    would turn a finished command into a failure.
    """
    code = 0
    try:
        app()
    except SystemExit as done:
        if isinstance(done.code, int):
            code = done.code
        elif done.code is not None:
            err.print(str(done.code))
            code = 1
    except MlsdError as e:
        err.print("error:", style="bold red", end=" ")
        err.print(str(e), soft_wrap=True)
        code = 2
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except Exception:  # a bug: show it whole, then exit like Python would
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away (| head)
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
