"""``mlsd init``, ``mlsd run``, ``mlsd ingest`` and ``mlsd stages``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import MlsdError
from ._common import (
    ConfigOpt,
    JsonOpt,
    NoWaitOpt,
    RichReporter,
    emit,
    err,
    fmt,
    group,
    lock_policy,
    out,
    project,
    rich_table,
)

if TYPE_CHECKING:
    from rich.table import Table

app = group("", no_args_is_help=False)


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="The project folder to create.")],
    from_: Annotated[str | None, typer.Option(
        "--from", metavar="FILE|GLOB|URL", help="Your data: a file or glob "
        "(copied into FOLDER/data/), or a database URL with --table.")] = None,
    target: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="With --from: the column to predict.")] = None,
    time: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="With --from: the event time (a time split).")] = None,
    key: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="With --from: the column naming a row.")] = None,
    group: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="With --from: an entity with several rows (a user,"
        " a patient): a group split, or shared across a time split.")] = None,
    task: Annotated[str | None, typer.Option(
        metavar="TASK", help="With --from: binary, multiclass, multilabel or "
        "regression (by default read from the target).")] = None,
    positive: Annotated[str | None, typer.Option(
        metavar="VALUE", help="With --from: the positive class of a binary "
        "target.")] = None,
    table: Annotated[str | None, typer.Option(
        metavar="NAME", help="With a database URL in --from: the table.")] = None,
    example: Annotated[str | None, typer.Option(
        help="Write an example project instead: forum-spam (the default without "
        "--from), feed-ranking (a feed ranked by two objectives) or call-center "
        "(request routing from few labels, annotators and rules).")] = None,
    force: Annotated[bool, typer.Option(help="Write into a folder that already "
                                        "holds a project.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a project folder: an example, or a proposal for your own data.

    Examples:
      mlsd init demo --example forum-spam
      mlsd init feed --example feed-ranking
      mlsd init calls --example call-center
      mlsd init churn --from customers.csv --target churned
      mlsd init sales --from 'exports/*.parquet' --target amount --time sold_at
      mlsd init shop --from sqlite:///shop.db --table orders --target returned
    """
    if (folder / "mlsd.yaml").exists() and not force:
        raise MlsdError(f"{folder}/mlsd.yaml already exists; pass --force to "
                        f"write over it")
    with_from = {"--target": target, "--time": time, "--key": key, "--group": group,
                 "--task": task, "--positive": positive, "--table": table}
    if from_ is None:
        used = [k for k, v in with_from.items() if v is not None]
        if used:
            raise MlsdError(f"{', '.join(used)} apply to your own data: add "
                            f"--from FILE")
        _init_example(folder, example or "forum-spam")
        return
    if example is not None:
        raise MlsdError("--from and --example are exclusive: a project holds your "
                        "data or an example")
    if target is None:
        raise MlsdError("--from needs --target COLUMN: the column to predict")
    if task is not None and task not in ("binary", "multiclass", "regression"):
        raise MlsdError(f"--task {task!r}: expected binary, multiclass or "
                        f"regression")
    from ..scaffold import init_from

    with err.status(f"reading {from_} ..."):
        proposal = init_from(folder, from_, target=target, time=time, key=key,
                             group=group, task=task, positive=positive, table=table,
                             command=_command_line())
    emit(proposal.to_dict(), as_json, lambda p: _print_proposal(proposal, folder))


def _command_line() -> str:
    import shlex
    import sys

    return "mlsd " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _print_proposal(p, folder: Path) -> None:
    out.print(f"{p.rows} rows of {p.source_note}: {p.task} on {p.target!r} "
              f"({p.task_why})")
    out.print(f"split: {p.split['strategy']} ({p.split_why})")
    t = rich_table(f"Features ({len(p.features)})")
    t.add_column("column", no_wrap=True)
    t.add_column("as", no_wrap=True)
    t.add_column("why")
    for c in p.features:
        enc = c.feature.get("encode", "numeric")
        t.add_row(c.column, enc if isinstance(enc, str) else ", ".join(enc), c.why)
    out.print(t)
    for c in p.left_out:
        out.print(f"left out {c.column}: {c.why}")
    for note in p.notes:
        out.print(f"note: {note}")
    out.print(f"wrote {folder}/mlsd.yaml; next: cd {folder} && mlsd run")


def _init_example(folder: Path, example: str) -> None:
    from ..examples import write

    manifest = write(example, folder)
    if "rows" in manifest:  # forum-spam
        what = (f"{sum(manifest['rows'].values())} posts in {len(manifest['rows'])} "
                f"files, {len(manifest['defects'])} planted defects "
                f"(data/defects.json)")
    else:
        what = manifest["summary"]
    err.print(f"wrote example {example!r} to {folder}/: {what}")
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
    no_wait: NoWaitOpt = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="Change a setting of mlsd.yaml for "
        "this run only (repeatable; the value is YAML): "
        "--set imbalance.resample=smote. The file is left as it is; the run "
        "records the spec it used.")] = None,
    engine: Annotated[str | None, typer.Option(
        metavar="ENGINE", help="duckdb (in-process) or spark (engine.master, "
        "e.g. local[4], or engine.remote sc://host:15002 in mlsd.yaml): where "
        "files are read and validated.")] = None,
) -> None:
    """Run the stages: ingest, table, sample, split, features, train, audit,
    report.

    Examples:
      mlsd run --json > summary.json
      mlsd run --until split        # data and splits only
      mlsd run --from features      # new features, same data and splits
      mlsd run --set imbalance.resample=smote --set "imbalance.compare=[tomek]"
      mlsd run --set "sample={method: stratified, n: 5000, by: author_country}"
      mlsd run --engine spark       # files read as Spark tasks (engine: spark)
    """
    from ..pipeline import run

    lock_policy(no_wait)
    proj = project(config)
    if set_:
        proj = proj.with_overrides(set_)
    with RichReporter(err) as rep:
        summary = run(proj, reporter=rep, from_=from_, until=until, engine=engine)
    emit(summary, as_json, print_summary)


def sources_table(title: str, sources: list[dict[str, Any]], *,
                  reasons: bool = False, total: dict[str, int] | None = None
                  ) -> Table:
    """Per source: rows read, stored, quarantined, and the dataset version."""
    t = rich_table(title)
    cols = ["source", "read", "stored", "quarantined", "dataset version"]
    # names and counts are never cut: on a narrow terminal the version and the
    # reasons wrap instead
    for c in cols + (["top reasons"] if reasons else []):
        t.add_column(c, justify="right" if c in ("read", "stored", "quarantined")
                     else "left",
                     no_wrap=c not in ("top reasons", "dataset version"),
                     overflow="fold")
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


def print_hints(sources: list[dict[str, Any]]) -> None:
    """A fix a source's quarantine names for most of its rows (the file's
    encoding), said once rather than left in each row's reason."""
    for src in sources:
        if src["reasons"].get("(record): encoding"):
            fix = next((m for m in src.get("top_messages", [])
                        if "set `encoding" in m), None)
            if fix:
                err.print(f"{src['source']}: {src['reasons']['(record): encoding']} "
                          f"row(s) have {fix}")


def print_summary(s: dict[str, Any]) -> None:
    """The run summary as a person reads it; parts of a partial run only."""
    if "sources" in s:
        out.print(sources_table(f"Data ({s['project']}, run {s['run_id']})",
                                s["sources"], total=s["totals"]))
        print_hints(s["sources"])
        if s.get("engine", "duckdb") != "duckdb":
            out.print(f"Files read and validated on {s['engine']}.")
        if s["top_reasons"]:
            out.print("Top quarantine reasons: " + ", ".join(
                f"{k} ({v})" for k, v in s["top_reasons"]))
    if (on := (s.get("features") or {}).get("analysed_on", "duckdb")) != "duckdb":
        out.print(f"Features analysed and applied on {on}.")
    if (fit := s.get("fit")) and fit.get("engine") != "duckdb":
        cols = fit.get("table_columns") or {}
        read = (f"; it read {len(cols['read'])} of the training table's "
                f"{cols['of']} columns: {', '.join(cols['read']) or 'none'}"
                if cols and len(cols["read"]) < cols["of"] else "")
        out.print(f"Model fitted on the driver: {fit['rows']:,} rows x "
                  f"{fit['inputs']:,} inputs ({fit['matrix_mib']} MiB), from "
                  f"{fit['from']}{read}.")
    if s.get("sample"):
        sm = s["sample"]
        on = sm.get("drawn_on", "duckdb")
        out.print(f"Sample ({sm['method']}"
                  f"{'' if on == 'duckdb' else ', drawn on ' + on}): {sm['rows']} "
                  f"of {sm['population']} train rows, effective size "
                  f"{sm['effective_size']}"
                  + (f"; {len(sm['warnings'])} bias warning(s), first: "
                     f"{sm['warnings'][0]}" if sm["warnings"] else ""))
        for note in sm.get("notes") or []:
            out.print(f"  note: {note}")
    if "split" in s:
        sp = s["split"]
        sizes = ", ".join(f"{k} {v}" for k, v in sp["sizes"].items())
        left = ", ".join(f"{v} {k}" for k, v in (sp.get("left_out") or {}).items())
        out.print(f"Split ({sp['strategy']}"
                  f"{' on ' + sp['time'] if sp['time'] else ''}): {sizes}"
                  + (f"; left out {left}" if left else "")
                  + (" (earlier cuts kept)" if sp.get("cuts_reused") else ""))
    lab = (s.get("training") or {}).get("labels")
    if lab:
        out.print("Labels by labels.policy: " + "; ".join(
            f"{rule} {got['rows']} rows" + (f" ({got['too_unsure']} too unsure)"
                                             if got.get("too_unsure") else "")
            for rule, got in lab["by_rule"].items()))
    if "model" in s:
        _print_model(s)
    if s.get("imbalance"):
        _print_imbalance(s["imbalance"])
    sl = s.get("slices")
    if sl and sl.get("slices"):
        keys = [k for k in sl["slices"][0] if k not in ("slice", "by", "rows",
                                                        "note", "positives", "few")]
        t = rich_table("Test metrics per slice")
        for c in ("slice", "rows", *keys):
            t.add_column(c)
        for r in sl["slices"]:
            t.add_row(r["slice"], str(r["rows"]),
                      *[fmt(r.get(k)) if "note" not in r else "" for k in keys])
        out.print(t)
        g = sl.get("gap")
        if g:
            out.print(f"Gap on {g['metric']}: {g['gap']} between {g['best']} (best) "
                      f"and {g['worst']} (worst)")
    ob = s.get("objectives")
    if ob:
        t = rich_table(f"Objectives ({ob['mode']} served; combined score ranks each, "
                       f"on test)")
        for c in ("objective", "weight", "own model (test)", "decoupled", "joint"):
            t.add_column(c)
        for k, o in ob["objectives"].items():
            t.add_row(f"{k} ({o['target']}, {o['task']})", f"{o['weight']:.2f}",
                      "; ".join(f"{mk} {fmt(mv)}" for mk, mv in o["metrics"].items()),
                      f"{ob['rank_metric'][k]} "
                      f"{fmt(ob['combined_at_spec_weights']['decoupled'][k])}",
                      fmt(ob["combined_at_spec_weights"]["joint"][k]))
        out.print(t)
        sec = ob["seconds_per_move"]
        ms = sec["decoupled"] * 1000
        out.print(f"Trade-off: a move of the weights costs {ms:.1f} ms decoupled "
                  f"(recombined), {sec['joint']} s joint (retrained); "
                  f"joint model: {ob['joint_note']}")
    reg = s.get("registry") or {}
    c = reg.get("compared")
    if c:
        mg = c["margin"]
        iv = mg.get("interval")
        out.print(f"Against {c['alias']} {c['a']} on {c['rows']} shared test rows: "
                  f"{mg['metric']} {fmt(c['metrics'][mg['metric']]['a'])} -> "
                  f"{fmt(c['metrics'][mg['metric']]['b'])}"
                  + (f", margin interval {iv[0]:+.4f} to {iv[1]:+.4f}" if iv else "")
                  + f": {c['verdict']}")
    if reg.get("promotion_note"):
        out.print(f"Registry: {reg['promotion_note']}")
    aug = s.get("augment") or {}
    if aug.get("rows"):
        out.print("Augmented rows (fit only): " + ", ".join(
            f"{k} {v}" for k, v in aug["rows"].items()))
    r = aug.get("robustness")
    if r:
        what = " and ".join(x for x in (
            f"noise {r['noise']} on {len(r['numbers'])} numbers" if r["numbers"]
            else "", f"word swaps and deletions in {r['text']!r}" if r["text"]
            else "") if x)
        if "flip_rate" in r:
            out.print(f"Robustness: {r['flipped']} of {r['rows']} test rows "
                      f"({100 * r['flip_rate']:.1f}%) change their prediction under "
                      f"{what}")
        else:
            out.print(f"Robustness: predictions move by {r['median_change']} of the "
                      f"target's spread (median) under {what}")
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
    mt = rich_table(f"Test metrics: model {m['model_id']} ({m['kind']}) vs "
                    "baselines")
    mt.add_column("")
    for n in names:
        mt.add_column(n, justify="right")
    mt.add_row("model", *[fmt(m["metrics"]["model"]["test"].get(n)) for n in names])
    boot = m["metrics"].get("bootstrap")
    if boot:
        iv = boot["intervals"].get("model", {})
        mt.add_row(f"  {100 * boot['level']:.0f}% interval", *[
            "" if not iv.get(n) else f"{iv[n][0]:.3f}-{iv[n][1]:.3f}"
            for n in names])
    for b in m["metrics"]["baselines"].values():
        mt.add_row(b["description"], *[fmt(b["test"].get(n)) for n in names])
    out.print(mt)
    per_label = m["metrics"]["model"]["test"].get("per_label")
    if per_label:  # multilabel: each label's own figures and threshold
        how = "a classifier chain" if m.get("chain") else "a model per label"
        lt = rich_table(f"Each label on test ({how})")
        cols = ("positives", "predicted", "precision", "recall", "f1", "pr_auc",
                "threshold")
        lt.add_column("label")
        for c in cols:
            lt.add_column(c, justify="right")
        for r in per_label:
            lt.add_row(str(r["label"]), *[fmt(r.get(c)) for c in cols])
        out.print(lt)
    elif m["threshold"] is not None:
        out.print(f"Decision threshold {m['threshold']:.4f} (chosen on validation "
                  f"for {m['threshold_objective']}).")
    if boot and boot["margins"]:
        margins = "; ".join(
            f"over {k} {v['interval'][0]:+.4f} to {v['interval'][1]:+.4f}"
            for k, v in boot["margins"].items() if v["interval"])
        out.print(f"Margin on {m['metrics']['primary']} ({boot['method']}, "
                  f"{boot['replicates']} replicates, paired): {margins}")
    se = m["metrics"].get("search")
    if se:
        out.print(f"Search: {se['trials']} trials in {se['seconds']:.1f} s on valid "
                  f"{se['metric']}: best {fmt(se['best_value'])}, the spec's own "
                  f"{fmt(se['spec_params_value'])}; kept {se['chosen']}")
    iv = m["metrics"].get("intervals")
    if iv:
        out.print(f"Prediction intervals at {iv['coverage']:.0%} on {iv['rows']} test "
                  f"rows: " + "; ".join(
                      f"{k}{' (served)' if k == iv['served'] else ''} covers "
                      f"{r['coverage']}, mean width {fmt(r['mean_width'])}"
                      for k, r in iv["methods"].items()))
    if m["beats_baselines"] is False and m["metrics"].get("beats_point"):
        out.print("The model scores above the baselines on these test rows, but "
                  "not beyond chance: a margin's interval includes 0.",
                  style="bold yellow")
    elif m["beats_baselines"] is False:
        out.print("The model does not beat the best baseline.", style="bold red")


@app.command()
def ingest(
    sources: Annotated[list[str] | None, typer.Argument(
        help="Sources to load (default: all).")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Load sources into the lake: extract, validate, quarantine, commit.

    Another mlsd writing the lake is waited for (--no-wait: fail at once).

    Example: mlsd ingest orders --json
    """
    from ..pipeline import ingest as run_ingest

    lock_policy(no_wait)
    proj = project(config)
    with RichReporter(err) as rep:
        res = run_ingest(proj, sources=sources, reporter=rep)

    def show(r: dict[str, Any]) -> None:
        out.print(sources_table("Ingest", r["sources"], reasons=True))
        print_hints(r["sources"])

    emit(res, as_json, show)


@app.command()
def consume(
    source: Annotated[str, typer.Argument(help="The broker source to consume.")],
    config: ConfigOpt = None,
    max_messages: Annotated[int | None, typer.Option(
        metavar="N", help="Stop after N messages (default: run until stopped).")
    ] = None,
    idle_seconds: Annotated[float | None, typer.Option(
        metavar="S", help="Stop once no message came for S seconds (a cron job, "
        "a backfill).")] = None,
    batch_rows: Annotated[int | None, typer.Option(
        metavar="N", help="Messages per micro-batch (default: the source's "
        "batch_rows).")] = None,
    batch_seconds: Annotated[float | None, typer.Option(
        metavar="S", help="A micro-batch's longest wait (default: the source's "
        "batch_seconds).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Consume a broker source (RabbitMQ queue, Redis stream) into the lake.

    Micro-batches are validated like a file's rows, committed, then
    acknowledged: each message is stored once, or quarantined and
    dead-lettered with its reasons. SIGTERM or Ctrl-C commits what was
    fetched and stops.

    Examples:
      mlsd consume events
      mlsd consume events --idle-seconds 10 --json
    """
    import time

    from ..pipeline import consume as run_consume

    proj = project(config)
    shown = [0.0]

    def progress(r) -> None:  # a line a second at most, on stderr
        if as_json or time.monotonic() - shown[0] < 1.0:
            return
        shown[0] = time.monotonic()
        err.print(f"{r.messages} messages: {r.stored} stored, {r.quarantined} "
                  f"quarantined, {r.duplicates} duplicates dropped "
                  f"({r.batches} batches)")

    # a long-running process of ours: what is loaded now lives as long as it
    # does; out of the collector's sight, a full collection no longer walks it
    # while each batch allocates (a sixth of a drain's time, measured)
    import gc

    gc.collect()
    gc.freeze()
    res = run_consume(proj, source, max_messages=max_messages,
                      idle_seconds=idle_seconds, batch_rows=batch_rows,
                      batch_seconds=batch_seconds, handle_signals=True,
                      on_batch=progress)

    def show(r: dict[str, Any]) -> None:
        out.print(f"{r['source']} ({r['broker']}): {r['messages']} messages in "
                  f"{r['batches']} batches, {r['seconds']} s: {r['stored']} stored "
                  f"(version {r['version']}), {r['quarantined']} quarantined and "
                  f"dead-lettered, {r['duplicates']} duplicates dropped"
                  + (f", {r['erased']} erased" if r["erased"] else "")
                  + f"; stopped by {r['stopped_by'] or 'end'}")
        if r["sampled"] is not None:
            out.print(f"  a reservoir keeps {r['sampled']} of the {r['seen']} valid "
                      f"rows seen")
        for reason, n in list(r["reasons"].items())[:5]:
            out.print(f"  {n} x {reason}")
        if r["schema_frozen"]:
            out.print(f"  schema inferred from the first batch and frozen: "
                      f"schemas/{r['source']}.yaml")

    emit(res, as_json, show)


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
        t = rich_table("Stages of mlsd run, in order")
        for c in ("stage", "package", "reads", "writes", "--from"):
            t.add_column(c)
        for r in rows:
            t.add_row(r["stage"], r["module"],
                      ", ".join(f"{p} ({k})" for p, k in r["reads"].items()),
                      ", ".join(f"{p} ({k})" for p, k in r["writes"].items()),
                      "yes" if r["can_start_here"] else f"no: {r['why_not']}")
        out.print(t)

    emit(stages(), as_json, show)


def _print_imbalance(b: dict) -> None:
    """Class counts, what resampling did, and the strategies compared."""
    counts = ", ".join(f"{c} {n}" for c, n in b["counts"].items())
    what = "Labels" if b.get("labels_per_row") else "Classes"
    out.print(f"{what} in train: {counts} (ratio {b['ratio']}:1"
              + (", imbalanced" if b["imbalanced"] else "") + ")")
    if b.get("labels_per_row"):
        out.print("Labels a row: " + ", ".join(
            f"{k}: {n} rows" for k, n in b["labels_per_row"].items()))
    r = b.get("resampled")
    if r:
        out.print(f"Resampled ({r['method']} on the {r.get('on', 'feature matrix')}"
                  f"{', two-phase' if r['two_phase'] else ''})"
                  f": {r['train_rows']} train rows -> {r['rows']} ({r['synthetic']} "
                  f"synthetic, {r['repeated']} repeated)")
    acc = b.get("accuracy")
    if acc and acc.get("model") is not None:
        out.print(f"Accuracy {acc['model']} against {acc['majority_class']} for "
                  f"always {acc['majority']!r}: not a measure of this model")
    if b.get("comparison"):
        t = rich_table("Resampling compared on validation")
        keys = [k for k in b["comparison"][0] if k not in ("method", "chosen")]
        for c in ("method", *keys):
            t.add_column(c)
        for row in b["comparison"]:
            t.add_row(row["method"] + (" (chosen)" if row["chosen"] else ""),
                      *[fmt(row[k]) for k in keys])
        out.print(t)

