"""``mlsd schema``: the data schemas of the sources."""

from __future__ import annotations

from typing import Any

from ._common import (
    ConfigOpt,
    JsonOpt,
    SourceArg,
    emit,
    group,
    known_source,
    out,
    project,
    rich_table,
)

app = group("The data schemas of the sources.")


@app.command("show")
def schema_show(source: SourceArg, config: ConfigOpt = None,
                as_json: JsonOpt = False) -> None:
    """Show a source's schema (frozen in schemas/SOURCE.yaml, or inferred now).

    Example: mlsd schema show posts_export
    """
    from ..etl import resolve_schema, schema_path, type_label

    proj = project(config)
    spec = proj.spec
    known_source(proj, source)
    path = schema_path(proj.root, source)
    frozen = path.is_file()
    schema, _ = resolve_schema(source, spec.sources[source], spec.validate_,
                               proj.root, freeze=False)
    doc = {"source": source, "frozen": frozen,
           "path": str(path.relative_to(proj.root)), "columns": schema.columns}

    def show(doc: dict[str, Any]) -> None:
        state = (f"frozen in {doc['path']}" if frozen else
                 "inferred now (frozen on the next run)")
        t = rich_table(f"Schema of {source} ({state})")
        for c in ("column", "type", "rules"):
            t.add_column(c)
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

    emit(doc, as_json, show)


@app.command("infer")
def schema_infer(source: SourceArg, config: ConfigOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Infer a source's schema again from its data and freeze it.

    The previous schemas/SOURCE.yaml is kept as SOURCE.yaml.bak; the columns
    whose type changed are listed. The next load validates against the new one.

    Example: mlsd schema infer posts_export
    """
    from ..etl import reinfer_schema

    proj = project(config)
    known_source(proj, source)
    result = reinfer_schema(source, proj.spec.sources[source],
                            proj.spec.validate_, proj.root)

    def show(result: dict[str, Any]) -> None:
        out.print(f"schema of {source} frozen in {result['path']}"
                  + (f" (previous kept in {result['backup']})" if result["backup"]
                     else ""))
        if not result["changes"]:
            out.print("no column changed")
        for c in result["changes"]:
            out.print(f"  {c['column']}: {c['before'] or '(new)'} -> "
                      f"{c['after'] or '(gone)'}")

    emit(result, as_json, show)
