"""``mlsd spec``: check the project spec, print its JSON Schema."""

from __future__ import annotations

from ._common import ConfigOpt, group, out, print_json, project

app = group("Check the project spec (mlsd.yaml) or print its JSON Schema.")


@app.command("check")
def spec_check(config: ConfigOpt = None) -> None:
    """Validate mlsd.yaml, and check it against the data's schemas (the
    columns it names exist, with the types their use needs); print what is
    wrong, with its path in the file.

    Example: mlsd spec check -c other.yaml
    """
    from ..pipeline import check

    proj = project(config)
    s = proj.spec
    check(proj)
    out.print(f"{proj.spec_path}: valid ({len(s.sources)} sources, "
              f"{len(s.features)} features, task {s.problem.task} on "
              f"{s.problem.target!r})")


@app.command("schema")
def spec_schema() -> None:
    """Print the JSON Schema of mlsd.yaml, for editors.

    Example: mlsd spec schema > mlsd.schema.json
    """
    from ..spec import json_schema

    print_json(json_schema())
