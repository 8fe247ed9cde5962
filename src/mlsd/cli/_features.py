"""Features: ``mlsd features prune``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    rich_table,
)

app = group("Feature engineering: which features earn their keep.")


@app.command()
def prune(
    tolerance: Annotated[float | None, typer.Option(
        help="Relative loss of the validation metric a removal may cost "
             "(default: feature_policy.prune_tolerance, 0.005).")] = None,
    budget: Annotated[float | None, typer.Option(
        help="Seconds of refitting at most (default: "
             "feature_policy.prune_budget_seconds, 300).")] = None,
    write: Annotated[Path | None, typer.Option(
        help="Write the spec with the proposed features only to this file "
             "(inside the project); mlsd.yaml is left as it is.")] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Propose the features whose removal does not hurt the validation metric
    beyond a tolerance: drop-one ablation of every feature (least important
    first, within the time budget), then a greedy pruned set refitted at each
    step. The test split is not used.

    Example: mlsd features prune --tolerance 0.01 --write mlsd.pruned.yaml
    """
    from ..pipeline import prune_features

    proj = project(config)
    with RichReporter(err) as rep:
        summary = prune_features(proj, tolerance=tolerance, budget_seconds=budget,
                                 write=write, reporter=rep)
    emit(summary["prune"], json_, _show)


def _show(res) -> None:
    t = rich_table(f"Drop-one ablation on validation ({res['metric']}: "
                   f"{res['valid_all']} with every feature)")
    for c in ("feature", "kind", "inputs", "µs/row", "importance", "without it",
              "loss", "proposal"):
        t.add_column(c, no_wrap=c != "feature")
    for r in res["features"]:
        us = r["us_per_row"]
        t.add_row(r["feature"], r["kind"], str(r["width"]),
                  "" if us is None else f"{us:.1f}",
                  fmt(r["gain_share"]), fmt(r["valid_without"]),
                  "" if r["loss"] is None else f"{100 * r['loss']:+.2f}%",
                  r["verdict"])
    out.print(t)
    out.print(f"proposed: drop {', '.join(res['drop']) or 'nothing'}; "
              f"{res['metric']} on validation {res['valid_all']} -> "
              f"{res['valid_pruned']} (tolerance {100 * res['tolerance']:.2f}%), "
              f"{res['us_saved_per_row']} µs less a served row; {res['fits']} fits "
              f"in {res['seconds']} s (measured {res['measured']} of {res['of']})")
    if res.get("written"):
        out.print(f"wrote {res['written']}")


@app.command()
def pretrain(
    column: Annotated[str, typer.Option(help="The text column to learn from.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The vectors file to write (inside the project), "
        "for `encode: embedding` with `vectors: FILE`.")],
    dim: Annotated[int, typer.Option(help="Numbers a word.")] = 64,
    min_df: Annotated[int, typer.Option(help="Texts a word must be in.")] = 2,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pretrain word vectors on the project's own text, labelled or not (the
    truncated SVD of its TF-IDF matrix), for an `embedding` feature.

    Example: mlsd features pretrain --column text -o models/text.vec --dim 64
    """
    from ..pipeline import pretrain_embeddings

    res = pretrain_embeddings(project(config), column, output, dim=dim,
                              min_df=min_df)
    emit(res, as_json, lambda r: out.print(
        f"{r['words']} word vectors of {r['dim']} numbers from {r['texts']} texts "
        f"({r['explained_variance']:.1%} of the TF-IDF variance) -> {r['file']}; "
        f"use them with {{column: {column}, encode: embedding, vectors: "
        f"{r['file']}}}"))
