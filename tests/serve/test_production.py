"""The service in production: the fast path equal to the batch path, request
ids, the prediction log and feedback, Prometheus metrics, the API key, and a
promoted model swapped in without a failed request."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from mlsd.models import ModelArtifact
from mlsd.serve._app import Served, create_app, project_app
from mlsd.spec import ServeSpec
from tests.serve.conftest import promote_under_load, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(ran_project) -> Served:
    folder, summary = ran_project
    return Served(ModelArtifact.load(Path(folder) / summary["paths"]["model"]),
                  ServeSpec())


def _rows(folder: Path, n: int) -> list[dict]:
    import pyarrow.csv as pacsv

    t = pacsv.read_csv(folder / "data" / "new_posts.csv").slice(0, n)
    return json.loads(json.dumps(t.to_pylist(), default=str))  # as sent


def test_the_fast_path_answers_as_the_batch_path(ran_project, served):
    assert served.fast
    rows, many = served.validate(_rows(Path(ran_project[0]), 200))
    fast = served.score_fast(rows, many)
    table, _ = served.score_table(rows, many, None)
    assert len(fast) == 200
    for a, b in zip(fast, table, strict=True):
        assert a["label"] == b["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-12)


texts = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(
    ["", "NA", " null ", "free crypto offer click here", "x" * 200]))
ints = st.one_of(st.none(), st.integers(-10**6, 10**9))


@given(st.fixed_dictionaries({
    "post_id": texts, "author_id": texts, "text": texts, "likes": ints,
    "dislikes": ints, "views": ints, "author_account_age_days": ints,
    "author_country": texts, "author_posts_before": ints,
    "created_at": st.one_of(st.none(), st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1)))}))
def test_any_row_gets_the_same_answer_or_the_same_422_on_both_paths(served, row):
    from fastapi.exceptions import RequestValidationError

    try:  # the request model's 422 comes first, before either path
        rows, many = served.validate({k: v for k, v in row.items() if k in
                                      served.artifact.input_schema["columns"]})
    except RequestValidationError:
        return
    try:
        fast = served.score_fast(rows, many)
    except RequestValidationError as err:
        with pytest.raises(RequestValidationError) as again:
            served.score_table(rows, many, None)
        assert list(err.errors()) == list(again.value.errors())
        return
    table, _ = served.score_table(rows, many, None)
    assert fast[0]["label"] == table[0]["label"]
    assert fast[0]["score"] == pytest.approx(table[0]["score"], abs=1e-12)


@given(st.fixed_dictionaries({
    "post_id": texts, "text": texts, "likes": st.one_of(ints, st.floats(), st.text(
        max_size=5)), "created_at": st.one_of(st.none(), st.text(max_size=12),
                                             st.datetimes().map(str)),
    "is_spam": st.one_of(st.none(), st.booleans()), "_source": texts}),
    st.sampled_from(["is_spam", "_source", "author_id", "nope"]))
def test_a_row_typed_from_its_json_is_the_row_validate_types(served, row, drop):
    """`mlsd serve --stream` types each message straight from its bytes:
    the same row as the REST way (parse, drop the label and provenance,
    validate), or a refusal wherever that way refuses."""
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    row = {k: v for k, v in row.items() if k != drop}
    body = json.dumps(row)
    try:
        want = served.validate(json.loads(body))[0][0]
    except RequestValidationError:
        with pytest.raises(ValidationError):
            served.row_from_json(body)
        return
    assert served.row_from_json(body) == want
    assert list(served.row_from_json(body)) == list(want)  # the same order


def test_a_message_that_is_no_row_is_refused_from_its_json(served):
    from pydantic import ValidationError

    for body in (b"[1, 2]", b"not json", b'{"text": "x"', b"7", b'{"zzz": 1}'):
        with pytest.raises(ValidationError):
            served.row_from_json(body)


def test_predictions_and_feedback_are_logged_and_become_natural_labels(project):
    rows, extra = _rows(project.root, 31)[:30], _rows(project.root, 31)[30]
    settings = project.spec.serve.model_copy(update={"log_flush_seconds": 0.2})
    app = project_app(project, settings=settings)
    with TestClient(app) as c:
        r = c.post("/predict", json=rows[0], headers={"X-Request-Id": "req-1"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "req-1"
        assert r.json()["predictions"][0]["request_id"] == "req-1"
        r = c.post("/predict", json=rows[1:])
        many = r.json()
        assert [p["request_id"] for p in many["predictions"]][:2] == [
            f"{many['request_id']}.0", f"{many['request_id']}.1"]
        r = c.post("/predict", json=extra, headers={"X-Request-Id": "bad id\n"})
        assert r.headers["x-request-id"] != "bad id\n"  # replaced by our own
        time.sleep(0.6)  # committed in the background, the request did not wait
        assert project.lake.exists("predictions", "forum-spam")
        clicks = [{"request_id": "req-1", "event": "report_spam"},
                  {"request_id": f"{many['request_id']}.3", "event": "report_spam",
                   "at": "2030-01-01T00:00:00Z"}]
        r = c.post("/feedback", json=clicks)
        assert r.status_code == 202 and r.json()["accepted"] == 2
        r = c.post("/feedback", json={"request_id": "", "event": "x"})
        assert r.status_code == 422
        stats = c.get("/model").json()["log"]
    log = project.lake.read("predictions", "forum-spam")
    assert log.num_rows == 31 and stats["predictions"]["written"] >= 30
    first = log.filter(pa.compute.equal(log.column("request_id"), "req-1"))
    assert first.column("item")[0].as_py() == rows[0]["post_id"]
    assert json.loads(first.column("inputs")[0].as_py())["text"] == rows[0]["text"]
    assert "score" in json.loads(first.column("outputs")[0].as_py())
    events = project.lake.read("feedback", "forum-spam")
    assert sorted(events.column("request_id").to_pylist()) == sorted(
        c["request_id"] for c in clicks)
    # the labels issue's natural labels read the service's log as they are
    from mlsd.spec._models import NaturalLabelsSpec
    from mlsd.trainingdata.labeling._natural import store_natural

    res = store_natural(project.lake, "forum-spam", NaturalLabelsSpec.model_validate(
        {"event": "report_spam", "window": "1h"}),
        now=datetime.now(UTC) + timedelta(hours=2))
    assert res["labelled"] == 31 and res["positives"] == 1  # one came too late


def test_the_log_keeps_its_retention(project):
    from mlsd.serve._log import LogWriter, log_row
    from mlsd.trainingdata.labeling._natural import LOG_SCHEMA

    w = LogWriter(project.lake, "predictions", "forum-spam", LOG_SCHEMA,
                  json_columns=("inputs", "outputs"),
                  retention_days=30, time_column="predicted_at")
    old = datetime.now(UTC) - timedelta(days=40)
    w.add([log_row("old", "p1", "m", {}, {}, at=old),
           log_row("new", "p2", "m", {}, {})])
    assert w.flush() == 2
    assert w.prune() == 1
    left = project.lake.read("predictions", "forum-spam")
    assert left.column("request_id").to_pylist() == ["new"]


def test_metrics_and_the_api_key(ran_project):
    folder, summary = ran_project
    app = create_app(Path(folder) / summary["paths"]["model"], api_key="s3cret")
    row = _rows(Path(folder), 1)[0]
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200  # open: a load balancer's probe
        assert c.get("/ready").status_code == 200
        r = c.post("/predict", json=row)
        assert r.status_code == 401 and "API key" in r.json()["detail"]
        assert c.post("/predict", json=row, headers={"X-API-Key": "wrong"}
                      ).status_code == 401
        assert c.post("/predict", json=row, headers={"X-API-Key": "s3cret"}
                      ).status_code == 200
        ok = c.post("/predict", json=[row, row],
                    headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        bad = c.post("/predict", json={**row, "likes": -5},
                     headers={"X-API-Key": "s3cret"})
        assert bad.status_code in (200, 422)
        text = c.get("/metrics", headers={"X-API-Key": "s3cret"}).text
    assert 'mlsd_requests_total{endpoint="/predict",status="200"} 2.0' in text
    assert 'mlsd_requests_total{endpoint="/predict",status="401"} 2.0' in text
    assert "mlsd_request_seconds_bucket" in text
    label = ok.json()["predictions"][0]["label"]
    version = ok.json()["model_version"]
    assert (f'mlsd_predictions_total{{label="{str(label)}",model_version="{version}"}}'
            ' 3.0') in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_promoted_model_is_swapped_in_under_load_without_a_failure(project):

    from mlsd.pipeline import promote_model, run

    first = project.which_model(None)[0]
    run(project.with_overrides(["model.params.num_leaves=7"]), until="train")
    second = [p for p in (project.home / "artifacts" / "models").iterdir()
              if p != first][0]
    promote_model(project, first.name)
    settings = project.spec.serve.model_copy(update={"reload_seconds": 0.2})
    with running(project_app(project, settings=settings)) as base:
        seen, failures = promote_under_load(project, base, _rows(project.root, 1)[0],
                                            second.name)
    assert failures == []
    assert seen[0] == first.name and seen[-1] == second.name
    assert len(seen) > 50


def test_two_workers_log_every_prediction_and_sum_their_metrics(project):
    import os
    import signal
    import subprocess
    import sys

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlsd", "serve", "--workers", "2", "--port", str(port)],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, workers = time.time() + 90, set()
        while len(workers) < 2 and time.time() < deadline:
            try:  # a new connection each time, until both workers answered
                workers.add(httpx.get(f"{base}/health", headers={
                    "Connection": "close"}).json()["worker"])
            except httpx.TransportError:
                time.sleep(0.2)
        assert len(workers) == 2
        rows = _rows(project.root, 50)
        ids: list[str] = []

        def send(part):  # a connection a request: both workers get some
            for r in part:
                res = httpx.post(f"{base}/predict", json=r,
                                 headers={"Connection": "close"})
                assert res.status_code == 200, res.text
                ids.append(res.json()["request_id"])
        senders = [threading.Thread(target=send, args=(rows[i::4] * 4,))
                   for i in range(4)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        assert len(ids) == 200
        text = httpx.get(f"{base}/metrics").text
        total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith('mlsd_requests_total{endpoint="/predict"'))
        assert total == 200  # both workers' counts, whichever answered
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    log = project.lake.read("predictions", "forum-spam")
    assert sorted(log.column("request_id").to_pylist()) == sorted(ids)
    writers = {h.get("mlsd.writer") for h in
               project.lake._table("predictions", "forum-spam").history()}
    assert len(writers - {None}) == 2  # each worker appended its own batches


def test_a_commit_conflict_is_retried_and_a_failure_keeps_the_rows():
    from mlsd.serve._log import LogWriter, log_row
    from mlsd.trainingdata.labeling._natural import LOG_SCHEMA

    class CommitFailedError(Exception):
        pass

    class Lake:
        def __init__(self, fail):
            self.fail, self.rows = fail, 0

        def append(self, area, name, table, **kw):
            if self.fail:
                self.fail -= 1
                raise CommitFailedError("concurrent transaction")
            self.rows += table.num_rows

    w = LogWriter(Lake(2), "predictions", "x", LOG_SCHEMA,
                  json_columns=("inputs", "outputs"))
    w.add([log_row("a", None, "m", {}, {}), log_row("b", None, "m", {}, {})])
    assert w.flush() == 2 and w.retries == 2 and w.lake.rows == 2
    broken = LogWriter(Lake(99), "predictions", "x", LOG_SCHEMA, max_pending=3,
                       json_columns=("inputs", "outputs"))
    broken.add([log_row(str(i), None, "m", {}, {}) for i in range(2)])
    assert broken.flush() == 0 and broken.failures == 1
    assert len(broken.pending) == 2  # kept for the next flush
    broken.add([log_row(str(i), None, "m", {}, {}) for i in range(2, 4)])
    assert len(broken.pending) == 3 and broken.dropped == 1  # bounded
    assert "CommitFailedError" in broken.stats()["last_error"]


def test_a_prediction_explained_by_its_source_columns(ran_project, served):
    import math

    folder, summary = ran_project
    rows = _rows(Path(folder), 3)
    with TestClient(create_app(Path(folder) / summary["paths"]["model"])) as c:
        r = c.post("/predict?explain=true", json=rows)
        assert r.status_code == 200, r.text
        plain = c.post("/predict", json=rows).json()["predictions"]
    for p, q in zip(r.json()["predictions"], plain, strict=True):
        assert p["score"] == q["score"]  # the explanation changes nothing
        e = p["explanation"]
        assert e["space"] == "log-odds" and len(e["columns"]) == 5
        sizes = [abs(c["contribution"]) for c in e["columns"]]
        assert sizes == sorted(sizes, reverse=True)
        assert {c["column"] for c in e["columns"]} <= set(
            served.artifact.input_schema["columns"])
    # every column's contribution and the base add up to the model's log-odds
    typed, many = served.validate(rows)
    preds = served.score_fast(typed, many)
    served.explain(typed, preds, top=1000)
    for p in preds:
        e = p["explanation"]
        total = e["base"] + sum(c["contribution"] for c in e["columns"])
        assert total == pytest.approx(math.log(p["score"] / (1 - p["score"])),
                                      abs=1e-4)
