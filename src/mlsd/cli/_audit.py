"""``mlsd audit``: leakage and generalisation checks on any train/test pair."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import MlsdError
from ._common import JsonOpt, err, group, out, rich_table

app = group("", no_args_is_help=False)


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
        help="binary, multiclass, multilabel or regression (default: from the "
        "target). multilabel: each label audited as its own binary target.")
        ] = None,
    separator: Annotated[str, typer.Option(
        help="--task multilabel: what joins a row's labels (a JSON list needs "
        "none).")] = "|",
    as_json: JsonOpt = False,
    json_path: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Also write the findings as JSON "
        "to this file.")] = None,
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
    from .._lazy import import_lightgbm_core

    import_lightgbm_core()  # before the audit imports it: see there
    from ..audit import SEVERITIES, audit_labels, audit_pair, split_table
    from ..etl import read_table

    if fail_on is not None and fail_on not in SEVERITIES:
        raise MlsdError(f"--fail-on: expected one of {', '.join(SEVERITIES)}, got "
                        f"{fail_on!r}")
    if task is not None and task not in ("binary", "multiclass", "multilabel",
                                         "regression"):
        raise MlsdError(f"--task: expected binary, multiclass, multilabel or "
                        f"regression, got {task!r}")
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
        common = {"target": target, "time_column": time_column, "group": group,
                  "allow_shared": allow_shared or [], "seed": seed}
        result = (audit_labels(train_t, test_t, separator=separator, **common)
                  if task == "multilabel" else
                  audit_pair(train_t, test_t, task=task, **common))
    doc = result.to_dict()
    doc["read"] = read_notes
    text = json.dumps(doc, indent=2, default=str)
    if json_path is not None:
        json_path.write_text(text + "\n", encoding="utf-8")
    if as_json:
        sys.stdout.write(text + "\n")
    if html_path is not None:
        from ..report import render_audit

        render_audit(doc, html_path)
    if not as_json:
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
    t = rich_table("Findings")
    t.add_column("severity")
    t.add_column("check")
    t.add_column("columns")
    t.add_column("what it means")
    for f in result.findings:
        t.add_row(f.severity, f.check, ", ".join(f.columns), f.message)
    out.print(t)


