"""``mlsd quarantine``: the rows validation rejected, with their reasons."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._common import (
    ConfigOpt,
    JsonOpt,
    SourceArg,
    emit,
    group,
    out,
    project,
    rich_table,
)

app = group("Rows rejected by validation, with their reasons.")


@app.command("show")
def quarantine_show(
    source: SourceArg,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="Rows to show at most.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List a source's rejected rows: file, line, every reason, the raw record.

    Example: mlsd quarantine show posts_log --limit 10
    """
    from ..etl import quarantine_rows

    rows = quarantine_rows(project(config).lake, source, limit=limit)

    def show(rows: list[dict[str, Any]]) -> None:
        if not rows:
            out.print(f"quarantine of {source} is empty")
            return
        t = rich_table(f"Quarantine of {source} (first {len(rows)})", show_lines=True)
        for c in ("file", "line", "reasons", "raw record"):
            t.add_column(c, overflow="fold")
        for r in rows:
            reasons = "\n".join(x["message"] for x in r["reasons"])
            t.add_row(r["_source"], str(r["_line"]), reasons, (r["raw"] or "")[:160])
        out.print(t)

    emit(rows, as_json, show)


@app.command("replay")
def quarantine_replay(source: SourceArg, config: ConfigOpt = None,
                      as_json: JsonOpt = False) -> None:
    """Validate a source's quarantined rows again, after fixing the schema,
    the rules or the data; rows that pass join the dataset.

    Example: mlsd quarantine replay posts_log
    """
    from ..pipeline import replay_quarantine

    res = replay_quarantine(project(config), source)
    emit(res, as_json, lambda res: out.print(
        f"replayed {res['replayed']} rows of {source}: {res['accepted']} "
        f"accepted (sources/{source}@{res['version']}), "
        f"{res['still_quarantined']} still quarantined "
        f"(quarantine/{source}@{res['quarantine_version']})"
        + (" (already replayed: nothing changed)" if res["skipped"] else "")))
