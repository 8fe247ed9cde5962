"""``mlsd init``, ``mlsd run``, ``mlsd ingest`` and ``mlsd stages``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import MlsdError
from ._common import (
    ConfigOpt,
    JsonOpt,
    RichReporter,
    emit,
    err,
    fmt,
    group,
    out,
    project,
)

app = group("", no_args_is_help=False)


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
    from ..examples import write

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
def run_cmd(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    from_: Annotated[str | None, typer.Option(
        "--from", metavar="STAGE", help="Start at this stage, reusing what the "
        "stages before it wrote in the last run that completed them (only where "
        "that is persisted: `mlsd stages` says where).")] = None,
    until: Annotated[str | None, typer.Option(
        metavar="STAGE", help="Stop after this stage.")] = None,
) -> None:
    """Run the stages: ingest, table, split, features, train, audit, report.

    Examples:
      mlsd run --json > summary.json
      mlsd run --until split        # data and splits only
      mlsd run --from features      # new features, same data and splits
    """
    from ..pipeline import run

    proj = project(config)
    with RichReporter(err) as rep:
        summary = run(proj, reporter=rep, from_=from_, until=until)
    emit(summary, as_json, print_summary)


def sources_table(title: str, sources: list[dict[str, Any]], *,
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


def print_summary(s: dict[str, Any]) -> None:
    """The run summary as a person reads it; parts of a partial run only."""
    if "sources" in s:
        out.print(sources_table(f"Data ({s['project']}, run {s['run_id']})",
                                s["sources"], total=s["totals"]))
        if s["top_reasons"]:
            out.print("Top quarantine reasons: " + ", ".join(
                f"{k} ({v})" for k, v in s["top_reasons"]))
    if "split" in s:
        sp = s["split"]
        sizes = ", ".join(f"{k} {v}" for k, v in sp["sizes"].items())
        out.print(f"Split ({sp['strategy']}"
                  f"{' on ' + sp['time'] if sp['time'] else ''}): {sizes}")
    if "model" in s:
        _print_model(s)
    for f in s.get("audit", []):
        out.print(f"audit [{f['severity']}] {f['check']} {f['columns']}: "
                  f"{f['message']}")
    paths = s.get("paths", {})
    if "report" in paths:
        out.print(f"Report: {paths['report']}")
    if "model" in paths:
        out.print(f"Model:  {paths['model']}")
    ran = [e["stage"] for e in s["stages"] if e["status"] == "ran"]
    reused = [f"{e['stage']} (run {e['run_id']})" for e in s["stages"]
              if e["status"] == "reused"]
    if reused or "partial" in s:
        out.print(f"Stages run: {', '.join(ran)}"
                  + (f"; reused: {', '.join(reused)}" if reused else ""))
    out.print(f"Took {s['seconds']:.1f} s.")


def _print_model(s: dict[str, Any]) -> None:
    m = s["model"]
    names = s["metric_names"]
    mt = Table(title=f"Test metrics: model {m['model_id']} ({m['kind']}) vs "
               f"baselines", title_justify="left")
    mt.add_column("")
    for n in names:
        mt.add_column(n, justify="right")
    mt.add_row("model", *[fmt(m["metrics"]["model"]["test"].get(n)) for n in names])
    for b in m["metrics"]["baselines"].values():
        mt.add_row(b["description"], *[fmt(b["test"].get(n)) for n in names])
    out.print(mt)
    if m["threshold"] is not None:
        out.print(f"Decision threshold {m['threshold']:.4f} (chosen on validation "
                  f"for {m['threshold_objective']}).")
    if m["beats_baselines"] is False:
        out.print("The model does not beat the best baseline.", style="bold red")


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
    from ..pipeline import ingest as run_ingest

    proj = project(config)
    with RichReporter(err) as rep:
        res = run_ingest(proj, sources=sources, reporter=rep)
    emit(res, as_json, lambda r: out.print(
        sources_table("Ingest", r["sources"], reasons=True)))


@app.command("stages")
def stages_cmd(as_json: JsonOpt = False) -> None:
    """List the stages of `mlsd run`, what each reads and writes, where a run
    can start.

    A run can start at a stage (--from) when everything it needs from the stages
    before it is persisted (lake datasets, artifacts), not kept in memory.

    Example: mlsd stages --json
    """
    from ..pipeline import stages

    def show(rows: list[dict[str, Any]]) -> None:
        t = Table(title="Stages of mlsd run, in order", title_justify="left")
        for c in ("stage", "package", "reads", "writes", "--from"):
            t.add_column(c)
        for r in rows:
            t.add_row(r["stage"], r["module"],
                      ", ".join(f"{p} ({k})" for p, k in r["reads"].items()),
                      ", ".join(f"{p} ({k})" for p, k in r["writes"].items()),
                      "yes" if r["can_start_here"] else f"no: {r['why_not']}")
        out.print(t)

    emit(stages(), as_json, show)
