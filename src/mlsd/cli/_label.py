"""``mlsd label``: the label store: import hand labels, measure how far the
annotators agree, and make one label an item from their votes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import ConfigOpt, JsonOpt, emit, group, out, project, rich_table

app = group("Labels: import them, measure agreement, aggregate the votes.")


def _fmt(v: Any) -> str:
    return "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


FromName = Annotated[str, typer.Option(
    help="Label Studio tasks: the choices tag the pre-annotation fills "
    "(its name in your labeling config).")]
ToName = Annotated[str, typer.Option(
    help="Label Studio tasks: the object tag the choices label (its name in "
    "your labeling config).")]


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="A file of labels: CSV, JSONL, "
                                         "Parquet, ... (one label a row), or a "
                                         "Label Studio JSON export.")],
    fmt: Annotated[str | None, typer.Option(
        "--format", help="labelstudio, or the file's own format (by default from "
        "the file; a .json export of Label Studio is recognised).")] = None,
    item: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="The item key's column (Label Studio: the task's "
        "data field); default: the project's key, else `item` (Label Studio: the "
        "task id).")] = None,
    label: Annotated[str, typer.Option(metavar="COLUMN",
                                       help="The label's column.")] = "label",
    annotator: Annotated[str, typer.Option(
        metavar="COLUMN", help="The column naming who labelled the row.")
        ] = "annotator",
    source: Annotated[str | None, typer.Option(
        metavar="NAME", help="One source for every row (a file from one "
        "annotator), instead of --annotator.")] = None,
    kind: Annotated[str, typer.Option(help="human, natural, function or model."
                                      )] = "human",
    confidence: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="A column of confidences.")] = None,
    time: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="A column of labelling times.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a file's labels in the label store (a source's label of an item
    replaces the one it gave before; the same file twice stores nothing).

    Examples:
      mlsd label import labels/round1.csv --annotator who
      mlsd label import export.json --item post_id
    """
    from ..pipeline import import_labels

    res = import_labels(project(config), path, fmt=fmt, item=item, label=label,
                        annotator=annotator, source=source, kind=kind,
                        confidence=confidence, time=time)

    def show(r: dict[str, Any]) -> None:
        what = "stored" if r["written"] else "already stored (nothing new)"
        out.print(f"{r['file']}: {r['rows']} label(s) of {r['items']} item(s) by "
                  f"{len(r['sources'])} source(s) {what}; label store version "
                  f"{r['version']}")
        for note in r["notes"]:
            out.print(f"  left out: {note}")
    emit(res, as_json, show)


@app.command("agreement")
def agreement_cmd(
    config: ConfigOpt = None,
    queue: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Write the items the annotators disagree on (most "
        "disputed first) to this CSV: the re-label queue.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """How far the annotators agree: Cohen's kappa per pair, Fleiss' kappa,
    Krippendorff's alpha, each annotator against the others, the labels they
    confuse, the items to label again.

    Example: mlsd label agreement --queue relabel.csv
    """
    from ..pipeline import label_agreement

    res = label_agreement(project(config))
    if queue is not None:
        import csv

        with open(queue, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["item", "votes", "entropy"])
            for q in res["queue"]:
                votes = q["votes"] if "votes" in q else {
                    who: "|".join(labels) for who, labels in q["sets"].items()}
                w.writerow([q["item"], "; ".join(f"{k}: {v}" for k, v in
                                                 votes.items()), q["entropy"]])

    def show(r: dict[str, Any]) -> None:
        if r.get("multilabel"):
            return _show_set_agreement(r, queue)
        out.print(f"{r['votes']} votes on {r['items']} items by {r['annotators']} "
                  f"annotators ({r['items_with_several_votes']} items with several "
                  f"votes); labels {', '.join(r['labels'])}"
                  + (" (ordered)" if r["ordinal"] else ""))
        out.print(f"Raw agreement {_fmt(r['raw_agreement'])}, Fleiss' kappa "
                  f"{_fmt(r['fleiss_kappa'])}, Krippendorff's alpha "
                  f"{_fmt(r['krippendorff_alpha'])}")
        t = rich_table("Pairs of annotators (items both labelled)")
        for c in ("a", "b", "items", "agreement", "kappa"):
            t.add_column(c, justify="left" if c in "ab" else "right")
        for p in r["pairs"]:
            t.add_row(p["a"], p["b"], str(p["items"]), _fmt(p["agreement"]),
                      _fmt(p["kappa"]))
        out.print(t)
        t = rich_table("Each annotator against the others' majority")
        for c in ("annotator", "items", "compared", "agreement", "kappa"):
            t.add_column(c, justify="left" if c == "annotator" else "right")
        for p in r["per_annotator"]:
            t.add_row(p["annotator"], str(p["items"]), str(p["compared"]),
                      _fmt(p["agreement_with_others"]), _fmt(p["kappa_with_others"]))
        out.print(t)
        out.print(f"{r['disagreements']} item(s) with disagreeing votes"
                  + (f": written to {queue}" if queue is not None else
                     " (--queue FILE writes them)"))
    emit(res, as_json, show)


def _show_set_agreement(r: dict[str, Any], queue: Path | None) -> None:
    """`mlsd label agreement` of label sets (the multilabel task)."""
    out.print(f"{r['votes']} label sets on {r['items']} items by "
              f"{r['annotators']} annotators ({r['items_with_several_votes']} items "
              f"with several); labels {', '.join(r['labels'])}")
    out.print(f"Same set {_fmt(r['raw_agreement'])}, Fleiss' kappa (mean over "
              f"labels) {_fmt(r['fleiss_kappa'])}, Krippendorff's alpha (Jaccard "
              f"distance between sets) {_fmt(r['krippendorff_alpha'])}")
    t = rich_table("Each label as a yes/no question")
    for c in ("label", "yes votes", "Fleiss' kappa", "alpha", "split items"):
        t.add_column(c, justify="left" if c == "label" else "right")
    for p in r["per_label"]:
        t.add_row(p["label"], str(p["yes_votes"]), _fmt(p["fleiss_kappa"]),
                  _fmt(p["krippendorff_alpha"]), str(p["disagreements"]))
    out.print(t)
    t = rich_table("Pairs of annotators (items both labelled)")
    for c in ("a", "b", "items", "same set", "Jaccard", "mean kappa"):
        t.add_column(c, justify="left" if c in "ab" else "right")
    for p in r["pairs"]:
        t.add_row(p["a"], p["b"], str(p["items"]), _fmt(p["agreement"]),
                  _fmt(p["jaccard"]), _fmt(p["kappa"]))
    out.print(t)
    t = rich_table("Each annotator against the others' majority set")
    for c in ("annotator", "items", "compared", "Jaccard"):
        t.add_column(c, justify="left" if c == "annotator" else "right")
    for p in r["per_annotator"]:
        t.add_row(p["annotator"], str(p["items"]), str(p["compared"]),
                  _fmt(p["jaccard_with_others"]))
    out.print(t)
    out.print(f"{r['disagreements']} item(s) with split votes"
              + (f": written to {queue}" if queue is not None else
                 " (--queue FILE writes them)"))


@app.command("aggregate")
def aggregate_cmd(
    method: Annotated[str | None, typer.Option(
        help="majority or dawid_skene (default: labels.aggregate).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write item, label, confidence "
        "to this CSV.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One label an item from the annotators' votes, with its confidence;
    Dawid-Skene also estimates each annotator's accuracy.

    Example: mlsd label aggregate --method dawid_skene -o labels.csv
    """
    from ..pipeline import aggregate_labels

    res = aggregate_labels(project(config), method)
    if output is not None:
        import csv

        with open(output, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["item", "label", "confidence"])
            for row in res["rows"]:
                w.writerow([row["item"], row["label"], row["confidence"]])

    def show(r: dict[str, Any]) -> None:
        if r.get("multilabel"):
            out.print(f"{r['method']}: {r['items']} label sets, label by label")
            for lb, d in (r.get("dawid_skene") or {}).get("per_label", {}).items():
                out.print(f"  {lb}: " + ", ".join(
                    f"{v} {_fmt(a)}" for v, a in d["voters"].items()))
            if output is not None:
                out.print(f"written to {output}")
            return
        out.print(f"{r['method']}: {r['items']} items, {len(r['labels'])} labels, "
                  f"{r['ties']} majority tie(s)")
        ds = r.get("dawid_skene")
        if ds:
            done = "" if ds["converged"] else ", not converged"
            t = rich_table(f"Annotators as Dawid-Skene sees them ({ds['iterations']} "
                           f"EM iterations{done})")
            t.add_column("annotator")
            t.add_column("estimated accuracy", justify="right")
            for a in ds["annotators"]:
                t.add_row(a["annotator"], _fmt(a["accuracy"]))
            out.print(t)
            out.print(f"{r['changed_from_majority']} item(s) get another label than "
                      f"the majority's")
        if output is not None:
            out.print(f"written to {output}")
    emit(res, as_json, show)


@app.command("exclude")
def exclude_cmd(
    source: Annotated[str, typer.Argument(help="The annotator, labeling function "
                                          "or model whose labels go.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a source's labels from the label store (a careless annotator, a
    wrong labeling function); the next `mlsd run` rebuilds the training table
    without them. To ignore a source without removing its labels, list it in
    labels.exclude instead.

    Example: mlsd label exclude bob
    """
    from ..pipeline import exclude_label_source

    res = exclude_label_source(project(config), source)
    emit(res, as_json, lambda r: out.print(
        f"{r['deleted']} label(s) of {r['source']} removed (label store version "
        f"{r['version']}); `mlsd run` rebuilds the training table without them"))


@app.command("next")
def next_cmd(
    n: Annotated[int, typer.Option("--n", "-n", help="Items to ask for.")] = 50,
    strategy: Annotated[str, typer.Option(
        help="least_confidence, margin, entropy or random.")] = "margin",
    diverse: Annotated[bool, typer.Option(
        "--diverse", help="A batch spread out (k-center greedy among the ten "
        "times n most uncertain), not n copies of one doubt.")] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the items: .json as Label "
        "Studio tasks with the model's label as a pre-annotation, .csv or .jsonl "
        "as rows.")] = None,
    model: Annotated[str | None, typer.Option(
        help="The model that judges (an id, an alias; default: the one served)."
    )] = None,
    from_name: FromName = "label",
    to_name: ToName = "text",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The unlabelled items whose labels the current model would learn most
    from (active learning), with its predictions.

    Example: mlsd label next --n 50 --diverse -o to_label.json
    """
    from ..pipeline import next_to_label, write_next

    doc = next_to_label(project(config), n=n, strategy=strategy, diverse=diverse,
                        model=model)
    if output is not None:
        write_next(doc, output, from_name=from_name, to_name=to_name)

    def show(d: dict[str, Any]) -> None:
        t = rich_table(f"Next {len(d['items'])} of {d['unlabelled']} unlabelled "
                       f"items ({d['strategy']}{', diverse' if d['diverse'] else ''};"
                       f" model {d['model']})")
        for c in ("item", "uncertainty", "predicted", "confidence"):
            t.add_column(c, justify="right" if c in ("uncertainty", "confidence")
                         else "left")
        for it in d["items"][:20]:
            t.add_row(str(it["item"]), _fmt(it["uncertainty"]), str(it["predicted"]),
                      _fmt(it["confidence"]))
        out.print(t)
        if output is not None:
            out.print(f"written to {output}")
    emit(doc, as_json, show)


@app.command("export")
def export_cmd(
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="FILE", help="Where to write: .json as Label "
        "Studio tasks (the model's labels as pre-annotations), .csv or .jsonl as "
        "rows.")],
    n: Annotated[int | None, typer.Option(
        "--n", "-n", help="Export this many, drawn at random with the spec's "
        "seed (default: all).")] = None,
    every: Annotated[bool, typer.Option(
        "--all", help="Labelled rows too (to label them again, say by a second "
        "annotator).")] = False,
    model: Annotated[str | None, typer.Option(
        help="The model whose predictions pre-annotate (an id, an alias; "
        "default: the one served, when there is one).")] = None,
    predictions: Annotated[bool, typer.Option(
        "--predictions/--no-predictions",
        help="Pre-annotate with the model's predictions.")] = True,
    from_name: FromName = "label",
    to_name: ToName = "text",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write stored items to label as Label Studio tasks (or rows), with the
    current model's predictions as pre-annotations; the annotated export comes
    back with `mlsd label import`.

    Example: mlsd label export --n 200 -o tasks.json
    """
    from ..pipeline import export_to_label, write_next

    doc = export_to_label(project(config), n=n, labelled=every, model=model,
                          predictions=predictions)
    write_next(doc, output, from_name=from_name, to_name=to_name)

    def show(d: dict[str, Any]) -> None:
        what = "stored" if d["labelled"] else "unlabelled"
        pre = (f"pre-annotated by model {d['model']}" if d["model"]
               else "without pre-annotations (no model)")
        out.print(f"{d['exported']} of {d['rows']} {what} items written to {output}, "
                  f"{pre}")
    emit({k: v for k, v in doc.items() if k != "items"} | {
        "output": str(output)}, as_json, show)


@app.command("simulate")
def simulate_cmd(
    start: Annotated[int, typer.Option(help="Labels to start from.")] = 20,
    batch: Annotated[int, typer.Option(help="Labels added a round.")] = 20,
    rounds: Annotated[int, typer.Option(help="Rounds.")] = 10,
    diverse: Annotated[bool, typer.Option(
        "--diverse", help="Uncertainty strategies pick diverse batches.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay the last run's labelled rows as if their labels were unknown:
    each strategy's learning curve (the test metric as labels are added)
    against random picking.

    Example: mlsd label simulate --start 20 --batch 20 --rounds 10
    """
    from ..pipeline import simulate_active

    res = simulate_active(project(config), start=start, batch=batch, rounds=rounds,
                          diverse=diverse)

    def show(r: dict[str, Any]) -> None:
        t = rich_table(f"Test {r['metric']} as labels are added (pool "
                       f"{r['pool']} train rows, {r['test_rows']} test rows)")
        t.add_column("labels")
        for s_ in r["curves"]:
            t.add_column(s_, justify="right")
        first = next(iter(r["curves"].values()))
        for i, p in enumerate(first):
            t.add_row(str(p["labels"]), *[_fmt(c[i]["score"]) if i < len(c) else ""
                                          for c in r["curves"].values()])
        t.add_row("mean", *[_fmt(v) for v in r["mean_score"].values()])
        out.print(t)
    emit(res, as_json, show)


@app.command("apply")
def apply_cmd(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the labeling functions of labels.functions on every stored row,
    store their votes (kind function) and measure them: coverage, overlap,
    conflict, accuracy where the target is known, the label model against
    majority vote. `{from: function}` in labels.policy then uses them.

    Example: mlsd label apply
    """
    from ..pipeline import apply_label_functions

    res = apply_label_functions(project(config))

    def show(r: dict[str, Any]) -> None:
        t = rich_table(f"Labeling functions on {r['rows']} rows (at least one "
                       f"votes on {r['covered']:.1%})")
        cols = ("votes", "coverage", "overlap", "conflict", "dev_rows", "accuracy")
        t.add_column("function")
        for c in cols:
            t.add_column(c, justify="right")
        for f in r["functions"]:
            t.add_row(f["function"], *[_fmt(f.get(c)) for c in cols])
        out.print(t)
        if r.get("merged"):
            out.print("Counted as one voter (they vote alike): " + "; ".join(
                " + ".join(g) for g in r["merged"]))
        if r.get("dev_rows"):
            out.print(f"On the {r['dev_rows']} rows whose target is known: label "
                      f"model {_fmt(r['label_model_accuracy'])}, majority vote "
                      f"{_fmt(r['majority_accuracy'])} ({r['majority_ties']} ties)")
        out.print(f"{r['stored_votes']} votes stored (label store version "
                  f"{r['version']}); `{{from: function}}` in labels.policy uses them")
    emit(res, as_json, show)


@app.command("pseudo")
def pseudo_cmd(
    method: Annotated[str, typer.Option(
        help="self_training (refit on the sure pseudo-labels, round after round) "
        "or spreading (label spreading on a nearest-neighbour graph).")
        ] = "self_training",
    threshold: Annotated[float, typer.Option(
        help="The confidence a pseudo-label needs.")] = 0.9,
    rounds: Annotated[int, typer.Option(help="self_training: rounds.")] = 3,
    copies: Annotated[int, typer.Option(
        help="Consistency: perturbed copies of each row that must agree with "
        "its pseudo-label (0: none).")] = 0,
    model: Annotated[str | None, typer.Option(
        help="The model whose features and classes are used (default: the one "
        "served).")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pseudo-label the unlabelled rows from the last run's train split, into
    the label store (kind model); `{from: model}` in labels.policy trains on
    them, never in valid or test.

    Example: mlsd label pseudo --threshold 0.95 --copies 3
    """
    from ..pipeline import pseudo_label

    res = pseudo_label(project(config), method=method, threshold=threshold,
                       rounds=rounds, copies=copies, model=model)
    emit(res, as_json, lambda r: out.print(
        f"{r['pseudo_labelled']} of {r['unlabelled']} unlabelled rows pseudo-"
        f"labelled by {r['source']} at confidence >= {r['threshold']} ("
        + ", ".join(f"{k} {v}" for k, v in r["by_label"].items()) + ")"
        + (f"; {r['inconsistent_dropped']} dropped as inconsistent under "
           f"{r['copies']} perturbed copies" if r["copies"] else "")
        + f"; label store version {r['version']}"))


@app.command("log")
def log_cmd(
    path: Annotated[Path, typer.Argument(help="A file of logged predictions.")],
    request_id: Annotated[str, typer.Option(metavar="COLUMN")] = "request_id",
    item: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="The item key (default: the project's key).")
        ] = None,
    time: Annotated[str, typer.Option(metavar="COLUMN",
                                      help="When it was predicted.")
                    ] = "predicted_at",
    output: Annotated[list[str] | None, typer.Option(
        "--output-column", metavar="COLUMN", help="A column of the model's "
        "outputs (repeatable); the others are the raw inputs.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append logged predictions to the prediction log (the service will
    write it itself; here, from files).

    Example: mlsd label log logs/predictions.jsonl --output-column score
    """
    from ..pipeline import import_prediction_log

    res = import_prediction_log(project(config), path, request_id=request_id,
                                item=item, time=time, outputs=output)
    emit(res, as_json, lambda r: out.print(
        f"{r['rows']} prediction(s) logged"
        + ("" if r["written"] else " (already stored: nothing new)")
        + (f"; {r['skipped']} without a request id or a time left out"
           if r["skipped"] else "")))


@app.command("feedback")
def feedback_cmd(
    path: Annotated[Path, typer.Argument(help="A file of feedback events.")],
    request_id: Annotated[str, typer.Option(metavar="COLUMN")] = "request_id",
    event: Annotated[str, typer.Option(metavar="COLUMN")] = "event",
    time: Annotated[str, typer.Option(metavar="COLUMN")] = "at",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append feedback events (impression, click, purchase, ...) to the
    feedback table.

    Example: mlsd label feedback events/2026-12.csv
    """
    from ..pipeline import import_feedback

    res = import_feedback(project(config), path, request_id=request_id,
                          event=event, time=time)
    emit(res, as_json, lambda r: out.print(
        f"{r['rows']} event(s) stored ("
        + ", ".join(f"{k} {v}" for k, v in r["events"].items()) + ")"
        + ("" if r["written"] else "; already stored: nothing new")))


@app.command("natural")
def natural_cmd(
    now: Annotated[str | None, typer.Option(
        help="The time windows are judged at (ISO 8601; default: now).")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Labels from feedback: each logged prediction joined to its events
    within labels.natural's window, into the label store (kind natural);
    predictions whose window is still open stay unlabelled.

    Example: mlsd label natural
    """
    from ..pipeline import natural_labels

    res = natural_labels(project(config), now=now)

    def show(r: dict[str, Any]) -> None:
        out.print(f"{r['labelled']} item(s) labelled from {r['predictions']} "
                  f"prediction(s) and {r['events']} event(s): {r['positives']} "
                  f"positive; {r['still_open']} still open (window {r['window']}), "
                  f"{r['events_outside_window']} event(s) outside their window")
        loop = r["feedback_loop_seconds"]
        if loop:
            out.print(f"Feedback loop, prediction to label: median "
                      f"{loop['median'] / 3600:.1f} h, p90 {loop['p90'] / 3600:.1f} h"
                      + (f"; to a positive's event: median "
                         f"{loop['positives_median'] / 3600:.1f} h"
                         if loop["positives_median"] is not None else ""))
    emit(res, as_json, show)
