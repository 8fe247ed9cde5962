"""The lake: ``mlsd lake`` (erasure, retention), ``mlsd sql``, ``mlsd export``,
``mlsd gc``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import (
    ConfigOpt,
    JsonOpt,
    NoWaitOpt,
    SourceArg,
    emit,
    err,
    fmt,
    group,
    lock_policy,
    out,
    print_json,
    project,
    rich_table,
)

app = group("Retention, erasure, checks and repair of the lake.")
top = group("", no_args_is_help=False)  # commands at the root: sql, export, gc


@top.command("gc")
def gc_cmd(
    config: ConfigOpt = None,
    keep: Annotated[int | None, typer.Option(
        metavar="N", help="Keep the reports of the last N runs (default: the "
        "spec's report.keep).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what would be removed; remove nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove old run reports and artifact folders no run recorded.

    Lake versions older than the retention are `mlsd lake vacuum`'s.

    Examples:
      mlsd gc --dry-run
      mlsd gc --keep 3
    """
    from ..pipeline import gc

    res = gc(project(config), keep_reports=keep, dry_run=dry_run)

    def show(r: dict[str, Any]) -> None:
        verb = "would remove" if r["dry_run"] else "removed"
        out.print(f"{verb} {len(r['reports_removed'])} report(s) (keeping the last "
                  f"{r['kept_reports']} runs') and {len(r['artifacts_removed'])} "
                  f"unrecorded artifact folder(s): "
                  f"{r['bytes_freed'] / 2**20:.1f} MiB")
        for item in r["reports_removed"] + r["artifacts_removed"]:
            out.print(f"  {item['path']}")

    emit(res, as_json, show)


@app.command("vacuum")
def lake_vacuum(
    config: ConfigOpt = None,
    retention_hours: Annotated[int | None, typer.Option(
        help="Override the spec's lake.retention_hours (0: only the latest "
        "version stays readable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the files that only versions older than the retention need, and
    the files an erasure replaced, however recent.

    Example: mlsd lake vacuum --retention-hours 0
    """
    from ..pipeline import vacuum

    def show(res: list[dict[str, Any]]) -> None:
        for r in res:
            erased = r.get("erased_files_removed", 0)
            out.print(f"{r['dataset']}: {r['files_removed']} files removed "
                      f"(retention {r['retention_hours']} h"
                      + (f"; {erased} held erased rows" if erased else "") + ")")

    emit(vacuum(project(config), retention_hours), as_json, show)


@app.command("check")
def lake_check_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check every dataset's latest version for damage done outside mlsd (a
    file missing, cut short, or without the table's columns); exit 1 if any.

    Example: mlsd lake check && mlsd run
    """
    from ..pipeline import lake_check

    res = lake_check(project(config))

    def show(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            state = "ok" if r["ok"] else "DAMAGED: " + "; ".join(r["problems"][:5])
            out.print(f"{r['dataset']}@{r['version']}: {state}")
        if any(not r["ok"] for r in rows):
            err.print("repair with `mlsd lake repair`")

    emit(res, as_json, show)
    if any(not r["ok"] for r in res):
        raise typer.Exit(1)


@app.command("repair")
def lake_repair_cmd(config: ConfigOpt = None, as_json: JsonOpt = False,
                    no_wait: NoWaitOpt = False) -> None:
    """Repair damaged datasets: restore the last intact version, then load a
    file source again from its files; says what was done for each.

    Example: mlsd lake repair
    """
    from ..pipeline import lake_repair

    lock_policy(no_wait)

    def show(rows: list[dict[str, Any]]) -> None:
        if not rows:
            out.print("nothing to repair: every dataset is whole")
        for r in rows:
            out.print(f"{r['dataset']}: {r['action']}")

    emit(lake_repair(project(config)), as_json, show)


@app.command("erasures")
def lake_erasures(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the erasures made by `mlsd lake delete`: each is applied again to
    every later load of its source.

    Example: mlsd lake erasures --json
    """
    from ..pipeline import erasures

    def show(rows: list[dict[str, Any]]) -> None:
        if not rows:
            out.print("no erasure yet")
            return
        t = rich_table(f"Erasures ({len(rows)})")
        for col in ("erasure", "source", "where", "when", "rows deleted"):
            t.add_column(col)
        for r in rows:
            deleted = ", ".join(f"{d} {v['deleted']}" for d, v in
                                r["datasets"].items() if v)
            t.add_row(r["erasure_id"], r["source"], r["where"], r["created_at"],
                      deleted)
        out.print(t)

    emit(erasures(project(config)), as_json, show)


@app.command("delete")
def lake_delete(
    source: SourceArg,
    where: Annotated[str, typer.Option(help="SQL predicate of the rows to erase, "
                                       "e.g. \"author_id = 'u000123'\".")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase rows (say, one person's data) from a source's dataset and its
    quarantine; vacuum afterwards to erase them from old versions too.

    WHERE is one DuckDB expression over a row; a subquery may read the rows
    being erased from as `dataset`, and nothing else (no file, no setting).
    Every dataset is checked before any row is deleted.

    Example: mlsd lake delete posts_log --where "author_id = 'u000123'"
    """
    from ..pipeline import delete_rows

    def show(res: dict[str, Any]) -> None:
        q = res.get("quarantine") or {"deleted": 0}
        tr = res.get("training") or {"deleted": 0}
        out.print(f"deleted {res['dataset']['deleted']} rows from sources/{source} "
                  f"(now @{res['dataset']['version']}), {q['deleted']} from its "
                  f"quarantine and {tr['deleted']} from the training table and "
                  f"its split; old versions keep them until `mlsd lake vacuum`")

    emit(delete_rows(project(config), source, where), as_json, show)


@top.command("sql")
def sql_cmd(
    query: Annotated[str, typer.Argument(help="A SQL query; each source is a view.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="Rows to print at most.")] = 50,
) -> None:
    """Query the lake with SQL (DuckDB), each source's latest version as a view.

    Read-only: the query sees those views and nothing else. Files
    (read_csv, COPY ... TO), ATTACH, extensions and SET are refused, so no
    query can change the lake or read outside it.

    Example: mlsd sql "SELECT status, count(*) FROM orders GROUP BY status"
    """
    from ..pipeline import sql

    table = sql(project(config), query)
    if as_json:
        print_json(table.slice(0, limit).to_pylist())
        return
    t = rich_table(f"{table.num_rows} rows")
    for name in table.column_names:
        t.add_column(name)
    for row in table.slice(0, limit).to_pylist():
        t.add_row(*[fmt(v) for v in row.values()])
    out.print(t)


@top.command()
def export(
    dataset: Annotated[str, typer.Argument(help="A lake dataset: a source name, or "
                                           "AREA/NAME (sources, quarantine, "
                                           "training, splits).")],
    format: Annotated[str, typer.Option("--format", "-f", help="csv, jsonl, json, "
                                        "parquet, avro, protobuf or pickle.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to "
                                                "write (default: exports/ in the "
                                                "project).")] = None,
    version: Annotated[int | None, typer.Option(help="Dataset version (default: "
                                                "the latest).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output "
                                        "file if it exists.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a lake dataset in any format mlsd reads.

    The output may not be inside .mlsd/, nor the spec, a schema or a source's
    file; an existing file is replaced only with --force.

    Example: mlsd export posts_export --format avro
    """
    from ..pipeline import export as export_to

    res = export_to(project(config), dataset, format, output, version=version,
                    force=force)
    emit(res, as_json, lambda res: out.print(
        f"wrote {res['rows']} rows of {res['dataset']}@{res['version']} as "
        f"{format} -> {res['output']}"))
