"""``mlsd sample``: draw a sample of any dataset, with its bias report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import ConfigOpt, JsonOpt, emit, group, out, rich_table

top = group("", no_args_is_help=False)

_METHODS = ("convenience, snowball, judgment, quota (non-probability); random, "
            "stratified, weighted, reservoir, importance (probability)")


def _quota(text: str | None) -> dict[str, int] | None:
    if text is None:
        return None
    from ..errors import SpecError

    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, n = part.rpartition("=")
        if not sep or not n.strip().lstrip("-").isdigit():
            raise SpecError(f"--quota {text!r}: expected CATEGORY=N[,CATEGORY=N...]")
        out[name.strip()] = int(n)
    return out


@top.command("sample")
def sample_cmd(
    dataset: Annotated[str, typer.Argument(
        help="A lake dataset (sources/NAME, training/NAME, a source name) or a "
             "data file.")],
    method: Annotated[str, typer.Option(help=f"How to draw: {_METHODS}.")],
    n: Annotated[int | None, typer.Option("--n", "-n", help="Rows to draw.")] = None,
    fraction: Annotated[float | None, typer.Option(
        help="Share of the rows to draw, instead of --n.")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed (default: the project's).")] = None,
    where: Annotated[str | None, typer.Option(
        help="SQL predicate: the available rows (convenience, quota), the "
             "expert's choice (judgment), the seeds (snowball).")] = None,
    keys: Annotated[str | None, typer.Option(
        help="Comma-separated row keys (judgment; snowball seeds).")] = None,
    chosen_by: Annotated[str | None, typer.Option(
        help="judgment: who chose the rows.")] = None,
    why: Annotated[str | None, typer.Option(
        help="judgment: on what grounds.")] = None,
    by: Annotated[str | None, typer.Option(
        help="stratified, quota: the column of the strata.")] = None,
    allocation: Annotated[str | None, typer.Option(
        help="stratified: proportional or equal.")] = None,
    quota: Annotated[str | None, typer.Option(
        help="quota: rows per category, as CATEGORY=N,CATEGORY=N.")] = None,
    per_category: Annotated[int | None, typer.Option(
        help="quota: the same number for every category.")] = None,
    weights: Annotated[str | None, typer.Option(
        help="weighted, reservoir: a column or SQL expression.")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="random, weighted: draw with replacement.")] = False,
    reweight: Annotated[bool | None, typer.Option(
        "--reweight/--no-reweight", help="weighted, stratified: weights that undo "
        "unequal chances.")] = None,
    proposal: Annotated[str | None, typer.Option(
        help="importance: the distribution drawn from (default uniform).")] = None,
    density: Annotated[str | None, typer.Option(
        help="importance: the distribution wanted.")] = None,
    link: Annotated[str | None, typer.Option(
        help="snowball: the column holding a linked row's key.")] = None,
    max_depth: Annotated[int | None, typer.Option(
        help="snowball: follow links at most this many steps.")] = None,
    key: Annotated[str | None, typer.Option(
        help="The row key (default: the source's or dataset.key).")] = None,
    version: Annotated[int | None, typer.Option(
        help="The dataset version (default: the latest).")] = None,
    write: Annotated[str | None, typer.Option(
        help="Keep the sample as samples/NAME in the lake.")] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Draw a sample of a dataset and compare it with the whole, column by
    column: category shares and quantiles, with every difference beyond what
    a random sample of that size would show, and every category that
    vanished.

    Examples:
      mlsd sample training/forum-spam --method stratified -n 2000 --by is_spam
      mlsd sample sources/posts_log --method reservoir -n 500
      mlsd sample data/posts.csv --method quota --by author_country --per-category 50
      mlsd sample training/forum-spam --method weighted -n 5000 \\
          --weights "exp(-date_diff('day', created_at, now()) / 30)" --write recent
    """
    from ..pipeline import sample_dataset

    settings: dict[str, Any] = {
        "method": method, "n": n, "fraction": fraction, "where": where,
        "keys": keys.split(",") if keys is not None else None,
        "chosen_by": chosen_by, "why": why, "by": by, "allocation": allocation,
        "quota": _quota(quota), "per_category": per_category, "weights": weights,
        "replace": replace or None, "reweight": reweight, "proposal": proposal,
        "density": density, "link": link, "max_depth": max_depth}
    settings = {k: v for k, v in settings.items() if v is not None}
    path = Path(dataset)
    proj: Any = None
    if not (path.suffix and path.is_file()) or write or config:
        from ._common import project

        proj = project(config)
    res = sample_dataset(proj, dataset, settings, version=version, key=key,
                         seed=seed, write=write)
    emit(res, json_, show_sample)


def show_sample(res: dict[str, Any]) -> None:
    """A sample's bias report as tables (also used by ``mlsd run``)."""
    where = res.get("dataset") or res.get("file") or "the population"
    if res.get("version") is not None:
        where += f"@{res['version']}"
    kind = "probability" if res["probability"] else "non-probability"
    out.print(f"{res['method']} sample ({kind}): {res['rows']} of {res['population']}"
              f" rows of {where}, effective size {res['effective_size']}"
              + (f", weights {res['weights']['min']}..{res['weights']['max']}"
                 if res.get("weighted") else ""))
    t = rich_table("The sample against the population")
    for c in ("column", "population", "sample", "flags"):
        t.add_column(c, overflow="fold")
    for b in res["bias"]:
        if b["kind"] == "categorical" and not b["shares"]:
            pop, smp = f"{b['population']['categories']} values", b["compared"]
        elif b["kind"] == "categorical":
            top = b["shares"][:4]
            pop = ", ".join(f"{s['value']} {s['population']:.1%}" for s in top)
            smp = ", ".join(f"{s['value']} {s['sample']:.1%}" for s in top)
        else:
            pq, sq = b["population"].get("quantiles"), b["sample"].get("quantiles")
            pop = f"median {pq[2]}, mean {b['population']['mean']}" if pq else "-"
            smp = f"median {sq[2]}, mean {b['sample']['mean']}" if sq else "-"
        t.add_row(b["column"], pop, smp, str(len(b["flags"])) if b["flags"] else "")
    out.print(t)
    for w in res["warnings"][:15]:
        out.print(f"  warning: {w}")
    for note in res["notes"]:
        out.print(f"  note: {note}")
    if res.get("written"):
        w = res["written"]
        out.print(f"wrote {w['dataset']}@{w['version']}")
