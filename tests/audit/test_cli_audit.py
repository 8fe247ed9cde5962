"""`mlsd audit` on files, without a project: JSON, --fail-on, --data --split."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tests._helpers import run_cli, run_probe

from .test_pair import _split, _synthetic, _table


def test_audit_a_pair_of_files_and_gate_ci(tmp_path):
    cols = _synthetic()
    cols["score"] = cols["y"] + np.random.default_rng(4).normal(0, 0.05, 6000)
    train, test = _split(_table(cols))
    pq.write_table(train, tmp_path / "train.parquet")
    pacsv.write_csv(test, tmp_path / "test.csv")  # any format mlsd reads
    proc = run_cli("audit", "--train", "train.parquet", "--test", "test.csv",
                   "--target", "y", "--json", "--fail-on", "high",
                   cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    f = next(f for f in doc["findings"] if f["check"] == "single_feature_power")
    assert set(f) == {"check", "severity", "columns", "message", "evidence"}
    assert f["columns"] == ["score"] and f["severity"] == "high"
    assert f["evidence"]["rows_used"] == train.num_rows
    assert doc["rows"] == {"train": train.num_rows, "test": test.num_rows}
    assert doc["thresholds"]["single_feature_auc"] == 0.99
    # the clean twin passes the gate, and the table names every finding
    clean = train.drop_columns(["score"]), test.drop_columns(["score"])
    pq.write_table(clean[0], tmp_path / "train.parquet")
    pq.write_table(clean[1], tmp_path / "test.parquet")
    proc = run_cli("audit", "--train", "train.parquet", "--test", "test.parquet",
                   "--target", "y", "--allow-shared", "customer", "--output",
                   "out.json", "--fail-on", "medium", cwd=tmp_path)
    assert "group_overlap" in proc.stdout  # low: declared shared
    doc = json.loads((tmp_path / "out.json").read_text())
    assert {f["severity"] for f in doc["findings"]} <= {"low"}


def test_audit_splits_one_file(tmp_path):
    pq.write_table(_table(_synthetic()), tmp_path / "all.parquet")
    random = json.loads(run_cli(
        "audit", "--data", "all.parquet", "--split", "random", "--time", "t",
        "--target", "y", "--json", cwd=tmp_path).stdout)
    assert "time_overlap" in {f["check"] for f in random["findings"]}
    by_time = json.loads(run_cli(
        "audit", "--data", "all.parquet", "--split", "time:t", "--target", "y",
        "--allow-shared", "customer", "--json", cwd=tmp_path).stdout)
    assert "time_overlap" not in {f["check"] for f in by_time["findings"]}


def test_audit_usage_errors_are_one_line(tmp_path):
    pq.write_table(pa.table({"x": [1.0, 2.0], "y": [0, 1]}), tmp_path / "a.parquet")
    cases = [
        (["--train", "a.parquet", "--target", "y"], "give --train and --test"),
        (["--train", "a.parquet", "--test", "a.parquet", "--target", "nope"],
         "no target column 'nope'"),
        (["--data", "a.parquet", "--target", "y"], "--data needs --split"),
        (["--data", "a.parquet", "--split", "weird", "--target", "y"],
         "unknown split 'weird'"),
        (["--train", "a.parquet", "--test", "a.parquet", "--target", "y",
          "--fail-on", "severe"], "--fail-on: expected one of"),
        (["--train", "missing.csv", "--test", "a.parquet", "--target", "y"],
         "no such file"),
    ]
    # the first through a real process (the console entry's exit code and
    # stderr), the others in this one: each process would import the audit's
    # libraries again for an error found before it needs them
    proc = run_cli("audit", *cases[0][0], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and cases[0][1] in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    from contextlib import chdir

    from typer.testing import CliRunner

    from mlsd.cli import app
    from mlsd.errors import MlsdError

    for args, message in cases[1:]:
        with chdir(tmp_path):
            res = CliRunner().invoke(app, ["audit", *args])
        # an mlsd error is what the console entry prints on one line, exit 2
        assert isinstance(res.exception, MlsdError), (args, res.output,
                                                      res.exception)
        assert message in str(res.exception), args


def test_html_report_renders_in_chromium(tmp_path):
    """The audit's HTML report opens offline in headless Chromium without a
    script error and shows its charts; user data in it is escaped."""
    from tests._helpers import external_refs, render_in_chromium

    cols = _synthetic()
    cols["<b>odd</b>"] = cols["y"] + np.random.default_rng(4).normal(0, 0.05, 6000)
    train, test = _split(_table(cols))
    pq.write_table(train, tmp_path / "train.parquet")
    pq.write_table(test, tmp_path / "test.parquet")
    run_cli("audit", "--train", "train.parquet", "--test", "test.parquet",
            "--target", "y", "--html", "audit.html", cwd=tmp_path)
    page = (tmp_path / "audit.html").read_text()
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page
    assert external_refs(page) == []  # opens offline
    shown = render_in_chromium(tmp_path / "audit.html")
    assert shown["errors"] == [] and shown["console_errors"] == []
    assert shown["charts"] == shown["chart_divs"] >= 3  # power, shift, classes
    assert "single_feature_power" in shown["text"]


def test_audit_loads_no_library_it_does_not_use(tmp_path):
    """`mlsd audit` of two Parquet files imports neither shap and numba (the
    probe's SHAP values come from LightGBM itself) nor the SQL and REST
    connectors' libraries: about 0.7 s of a 3 s audit (benchmarks/busy.py);
    nor scikit-learn (the probe uses LightGBM's native API, which is imported
    without its scikit-learn wrapper): 0.5 s more."""
    train, test = _split(_table(_synthetic()))
    pq.write_table(train.slice(0, 800), tmp_path / "train.parquet")
    pq.write_table(test.slice(0, 200), tmp_path / "test.parquet")
    probe = (
        "import json, sys, mlsd.cli\n"
        "mlsd.cli.app(['audit', '--train', 'train.parquet', '--test',\n"
        "              'test.parquet', '--target', 'y', '--output', 'a.json'],\n"
        "             standalone_mode=False)\n"
        "print('PROBE', json.dumps(sorted({m.split('.')[0] for m in sys.modules}\n"
        "      & {'shap', 'numba', 'sqlalchemy', 'httpx', 'lightgbm',\n"
        "         'sklearn'})))\n")
    assert run_probe(probe, cwd=tmp_path) == ["lightgbm"]
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["model"]["shap"]["rows_used"] > 0
