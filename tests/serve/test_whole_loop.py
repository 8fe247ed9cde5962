"""The whole production loop on the forum-spam example, in one test: serve
it, send traffic (part of it shifted), send feedback, `mlsd monitor` reports
the shift and the live metrics, and a new model promoted under load takes
over with no failed request."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

import mlsd
from mlsd.models import ModelArtifact
from mlsd.models._registry import model_parts
from mlsd.pipeline import promote_model, run
from mlsd.serve._app import project_app
from tests.serve.conftest import promote_under_load, running

pytestmark = pytest.mark.slow


def test_serve_feedback_monitor_promote(project):
    project = project.with_overrides(
        ["labels.natural={event: report_spam, window: 1h}"])
    first = project.which_model(None)[0]
    promote_model(project, first.name)  # the champion, until another is promoted
    art = ModelArtifact.load(first)
    train = model_parts(project.lake, art.manifest)["train"]
    train = train.take(np.random.default_rng(1).choice(train.num_rows, 400,
                                                       replace=False))
    cols = [c for c in art.input_schema["columns"] if c in train.column_names]
    rows = json.loads(json.dumps(train.select(cols).to_pylist(), default=str))
    spam = train.column("is_spam").to_pylist()
    # the second half arrives shifted: many more likes
    sent = rows[:200] + [{**r, "likes": (r.get("likes") or 0) * 30 + 100}
                         for r in rows[200:]]
    settings = project.spec.serve.model_copy(update={"reload_seconds": 0.2,
                                                     "log_flush_seconds": 0.2})
    with running(project_app(project, settings=settings)) as base:
        with httpx.Client(base_url=base) as c:
            ids = []
            for i in range(0, len(sent), 50):
                r = c.post("/predict", json=sent[i:i + 50])
                assert r.status_code == 200
                ids += [p["request_id"] for p in r.json()["predictions"]]
            events = [{"request_id": i, "event": "report_spam"}
                      for i, s in zip(ids, spam, strict=True) if s]
            assert c.post("/feedback", json=events).status_code == 202
        time.sleep(0.6)  # the log's background commit
        doc = mlsd.pipeline.monitor(project, since="1d", window="1h", report=False,
                                    now=datetime.now(UTC) + timedelta(hours=2))
        assert doc["rows"] == 400 and doc["status"] == "alert"
        assert ("distribution_shift", ["likes"]) in [(a["check"], a["columns"])
                                                     for a in doc["alerts"]]
        assert doc["live"]["labelled"] == 400 and "pr_auc" in doc["live"]["metrics"]
        # a new model, promoted while clients keep sending
        run(project.with_overrides(["model.params.num_leaves=7"]), until="train")
        second = next(p for p in (project.home / "artifacts" / "models").iterdir()
                      if p != first)
        seen, failures = promote_under_load(project, base, rows[0],
                                            second.name)
    assert failures == [] and seen[0] == first.name and seen[-1] == second.name
