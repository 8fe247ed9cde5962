"""`mlsd monitor`: served traffic (the service's own prediction log) against
the model's training rows, with the audit's drift checks, and live metrics
from feedback once natural labels arrive."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import mlsd
from mlsd.audit._monitor import drift
from mlsd.models import ModelArtifact
from mlsd.models._registry import model_parts
from mlsd.pipeline import Project
from mlsd.serve._app import project_app
from tests.serve.conftest import served_copy

pytestmark = pytest.mark.slow
NATURAL = "labels.natural={event: report_spam, window: 1h}"


@pytest.fixture()
def project(ran_project, tmp_path) -> Project:
    return served_copy(Path(ran_project[0]), tmp_path / "demo").with_overrides(
        [NATURAL])


def _test_rows(project: Project, n: int, part: str = "train"
               ) -> tuple[list[dict], list[bool]]:
    """Rows the model learnt from (the example splits by time: its test split
    is newer, and some inputs moved), as a client would send them, and
    whether each is spam."""
    art = ModelArtifact.load(project.which_model(None)[0])
    test = model_parts(project.lake, art.manifest)[part]
    test = test.take(np.random.default_rng(0).choice(test.num_rows, n,
                                                     replace=False))
    cols = [c for c in art.input_schema["columns"] if c in test.column_names]
    rows = json.loads(json.dumps(test.select(cols).to_pylist(), default=str))
    return rows, [bool(v) for v in test.column("is_spam").to_pylist()]


def _serve(project: Project, rows: list[dict], feedback=None) -> list[str]:
    settings = project.spec.serve.model_copy(update={"log_flush_seconds": 0.2})
    ids = []
    with TestClient(project_app(project, settings=settings)) as c:
        for part in range(0, len(rows), 50):
            r = c.post("/predict", json=rows[part:part + 50])
            assert r.status_code == 200, r.text
            ids += [p["request_id"] for p in r.json()["predictions"]]
        if feedback is not None:
            events = [{"request_id": i, "event": "report_spam"}
                      for i, hit in zip(ids, feedback, strict=True) if hit]
            assert c.post("/feedback", json=events).status_code == 202
        time.sleep(0.5)
    return ids


def test_the_same_traffic_as_training_raises_nothing_and_live_metrics_hold(project):
    rows, spam = _test_rows(project, 600)
    _serve(project, rows, feedback=spam)
    later = datetime.now(UTC) + timedelta(hours=2)  # every window has closed
    doc = mlsd.pipeline.monitor(project, since="1d", window="1h", now=later)
    assert doc["rows"] == 600 and doc["status"] == "ok", doc["alerts"]
    assert doc["inputs"]["likes"]["psi"] < 0.1
    assert doc["live"]["labelled"] == 600
    assert doc["live"]["primary"] == "pr_auc"
    assert doc["live"]["drop"] < 0.05  # no worse than on test (these trained it)
    assert doc["skipped"] == {"created_at": "a timestamp: newer by construction"}
    html = (project.root / doc["report"]).read_text()
    assert "monitor-plot-0" in html and "Live metrics" in html


def test_shifted_traffic_and_a_worse_model_are_alerts(project):
    rows, spam = _test_rows(project, 600)
    shifted = [{**r, "likes": (r.get("likes") or 0) * 20 + 50,
                "author_country": "ZZ" if i % 3 == 0 else r.get("author_country"),
                "author_posts_before": None if i % 4 == 0 else
                r.get("author_posts_before")} for i, r in enumerate(rows)]
    _serve(project, shifted, feedback=[not s for s in spam])  # users disagree
    later = datetime.now(UTC) + timedelta(hours=2)
    doc = mlsd.pipeline.monitor(project, since="1d", window="1h", now=later)
    checks = {(a["check"], tuple(a["columns"])) for a in doc["alerts"]}
    assert ("distribution_shift", ("likes",)) in checks
    assert ("unseen_categories", ("author_country",)) in checks
    assert ("missing_rate_shift", ("author_posts_before",)) in checks
    assert any(c == "live_metric_drop" for c, _ in checks), doc["live"]
    assert doc["inputs"]["author_country"]["cramers_v"] > 0.3
    assert doc["status"] == "alert"
    # the service shows the last verdict as gauges, for dashboards and alerting
    with TestClient(project_app(project)) as c:
        text = c.get("/metrics").text
    psi = next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlsd_drift_psi{") and 'column="likes"' in line)
    assert psi == doc["inputs"]["likes"]["psi"]
    assert f'mlsd_drift_alerts{{model_version="{doc["model"]}"}} ' \
           f'{float(len(doc["alerts"]))}' in text
    assert 'mlsd_live_metric{' in text
    # the command: JSON, and exit 1 for a cron job
    from mlsd.cli import app

    r = CliRunner().invoke(app, [
        "monitor", "--since", "30d", "--json", "--no-report", "--config",
        str(project.spec_path)])
    assert r.exit_code == 1, r.output
    assert json.loads(r.output)["status"] == "alert"


def test_too_few_rows_is_no_verdict(project):
    rows, _ = _test_rows(project, 20)
    _serve(project, rows)
    doc = mlsd.pipeline.monitor(project, report=False)
    assert doc["status"] == "too_few_rows" and "min_rows" in doc["why"]


def test_drift_is_the_audits_definition():
    """One definition: the monitor's figures are the audit's shift check's."""
    import pyarrow as pa

    from mlsd.audit._checks import shift
    from mlsd.audit._data import make_pair

    rng = np.random.default_rng(0)
    a = pa.table({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000),
                  "y": rng.integers(0, 2, 2000)})
    b = pa.table({"x": rng.normal(0.5, size=2000), "c": rng.choice(["a", "b", "z"],
                                                                     2000),
                  "y": rng.integers(0, 2, 2000)})
    _, audit_stats = shift(make_pair(a, b, target="y"))
    found, stats = drift(a, b, columns=["x", "c"])
    assert stats == audit_stats
    assert {f["check"] for f in found} == {"distribution_shift", "unseen_categories"}
    assert 0 < stats["c"]["cramers_v"] < 1 and stats["x"]["ks_p_value"] < 1e-6


@pytest.mark.parametrize("args, said", [
    (["monitor", "--since", "1x"], "--since '1x'"),
    (["serve", "--grpc-port", "99999"], "--grpc-port: Input should be less than"),
    (["serve", "--workers", "0"], "--workers: Input should be greater than"),
])
def test_a_mistyped_option_is_one_clear_line(project, args, said):
    from tests._helpers import run_cli

    r = run_cli(*args, cwd=project.root, check=False)
    assert r.returncode == 2 and said in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
