"""The spine end to end: init, run, serve in another process, batch scoring."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable

from tests._helpers import run_cli
from tests.conftest import EXAMPLE_POSTS

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ran_project):
    folder, summary = ran_project
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlsd", "serve", "--port", str(port)], cwd=folder,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.stderr.read()}")
        time.sleep(0.2)
    yield base, summary
    proc.terminate()
    proc.wait(timeout=10)


RAW_ROWS = [
    # an ordinary post
    {"post_id": "n1", "author_id": "u000010", "created_at": "2025-01-02T10:00:00Z",
     "text": "Thanks, the install guide works", "likes": 4, "dislikes": 0,
     "views": 80, "author_account_age_days": 900, "author_country": "FR",
     "author_posts_before": 12},
    # spam words, a brand new author and a country never seen in training
    {"post_id": "n2", "author_id": "u999999", "created_at": "2025-01-02T03:00:00Z",
     "text": "FREE crypto bonus, click now", "likes": 0, "dislikes": 5,
     "views": 20, "author_account_age_days": 0, "author_country": "Atlantis",
     "author_posts_before": 0},
    # nulls wherever the schema allows them
    {"post_id": "n3", "author_id": "u000011", "created_at": "2025-01-03T23:59:59Z",
     "text": "hello", "likes": None, "dislikes": None, "views": None,
     "author_account_age_days": None, "author_country": None,
     "author_posts_before": None},
    # optional fields left out entirely
    {"post_id": "n4", "author_id": "u000012", "created_at": "2025-01-04T12:30:00Z",
     "text": "Une question sur le schéma 👍"},
]
COLUMNS = ["post_id", "author_id", "created_at", "text", "likes", "dislikes",
           "views", "author_account_age_days", "author_country",
           "author_posts_before"]


def test_run_summary_reconciles_and_beats_baselines(ran_project):
    folder, s = ran_project
    t = s["totals"]
    assert t["rows_in"] == EXAMPLE_POSTS
    assert t["rows_in"] == t["rows_stored"] + t["rows_quarantined"]
    for src in s["sources"]:
        assert src["rows_in"] == src["rows_stored"] + src["rows_quarantined"]
    sizes = s["split"]["sizes"]
    assert sum(sizes.values()) == s["split"]["rows"] == t["rows_stored"]
    m = s["model"]
    assert m["task"] == "binary" and 0 < m["threshold"] < 1
    test = m["metrics"]["model"]["test"]
    assert {"pr_auc", "recall", "f1", "precision"} <= set(test)
    assert m["beats_baselines"] is True
    prior = m["metrics"]["baselines"]["prior"]["test"]["pr_auc"]
    rule = m["metrics"]["baselines"]["one_feature"]["test"]["pr_auc"]
    assert test["pr_auc"] > max(prior, rule) + 0.2
    assert (folder / s["paths"]["report"]).is_file()
    assert (folder / s["paths"]["model"] / "manifest.json").is_file()


def test_stored_rows_carry_their_provenance(ran_project):
    folder, s = ran_project
    table = DeltaTable(str(folder / ".mlsd/lake/sources/posts_export")
                       ).to_pyarrow_table()
    assert {"_source", "_source_sha256", "_line", "_load_id"} <= set(
        table.column_names)
    src = next(x for x in s["sources"] if x["source"] == "posts_export")
    assert set(table.column("_source_sha256").to_pylist()) == {
        src["files"][0]["sha256"]}
    assert set(table.column("_load_id").to_pylist()) == {src["load_id"]}
    # the line number points at the row in the raw file
    row = table.slice(100, 1).to_pylist()[0]
    with open(folder / "data/posts_export.csv", encoding="utf-8", newline="") as fh:
        lines = fh.read().split("\n")
    assert lines[row["_line"] - 1].startswith(row["post_id"] + ",")


def test_serve_matches_batch_scoring(server, ran_project, tmp_path):
    base, summary = server
    folder, _ = ran_project
    # the online path
    r = httpx.post(f"{base}/predict", json=RAW_ROWS, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == summary["model"]["model_id"]
    assert r.headers["x-model-version"] == summary["model"]["model_id"]
    online = body["predictions"]
    assert len(online) == len(RAW_ROWS)
    # one row, not in a list
    single = httpx.post(f"{base}/predict", json=RAW_ROWS[1], timeout=30).json()
    assert single["predictions"][0]["request_id"] == single["request_id"]
    assert {k: v for k, v in single["predictions"][0].items() if k != "request_id"} \
        == {k: v for k, v in online[1].items() if k != "request_id"}
    # the batch path, from a CSV of the same raw rows
    path = tmp_path / "new.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for row in RAW_ROWS:
            w.writerow(["" if row.get(c) is None else row.get(c) for c in COLUMNS])
    out = tmp_path / "scored.parquet"
    run_cli("predict", "--input", str(path), "--output", str(out), cwd=folder)
    batch = pq.read_table(out).to_pylist()
    assert [b["post_id"] for b in batch] == [r["post_id"] for r in RAW_ROWS]
    assert [b["score"] for b in batch] == [p["score"] for p in online]
    assert [b["label"] for b in batch] == [p["label"] for p in online]
    assert all(b["model_version"] == summary["model"]["model_id"] for b in batch)
    # the spam-worded post from a new account scores above the ordinary one
    assert online[1]["score"] > online[0]["score"]


def test_serve_rejects_bad_fields_with_422_naming_them(server):
    base, summary = server
    bad_type = dict(RAW_ROWS[0], likes="many")
    r = httpx.post(f"{base}/predict", json=[RAW_ROWS[0], bad_type], timeout=10)
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["detail"]]
    assert locs == [["body", 1, "likes"]]
    assert r.json()["model_version"] == summary["model"]["model_id"]
    missing = {k: v for k, v in RAW_ROWS[0].items() if k != "author_id"}
    r = httpx.post(f"{base}/predict", json=missing, timeout=10)
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "author_id"]]
    unknown = dict(RAW_ROWS[0], is_admin=True)
    r = httpx.post(f"{base}/predict", json=unknown, timeout=10)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "is_admin"]
    bad_time = dict(RAW_ROWS[0], created_at="yesterday")
    r = httpx.post(f"{base}/predict", json=bad_time, timeout=10)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
        "body", "created_at"]
    for junk in (b"not json", b'"a string"', b"42", b"[1, 2]"):
        r = httpx.post(f"{base}/predict", content=junk,
                       headers={"content-type": "application/json"}, timeout=10)
        assert r.status_code == 422, junk


def test_service_endpoints(server):
    base, summary = server
    assert httpx.get(f"{base}/health").json()["status"] == "ok"
    ready = httpx.get(f"{base}/ready").json()
    assert ready == {"ready": True, "model_version": summary["model"]["model_id"]}
    model = httpx.get(f"{base}/model").json()
    assert model["model_version"] == summary["model"]["model_id"]
    assert [d["dataset"] for d in model["lineage"]["datasets"]] == [
        "sources/posts_export", "sources/posts_log"]
    assert "is_spam" not in model["input_schema"]["columns"]
    spec = httpx.get(f"{base}/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert "likes" in json.dumps(body)


def test_example_scoring_file(ran_project, tmp_path):
    folder, _ = ran_project
    out = tmp_path / "scored.parquet"
    proc = run_cli("predict", "--input", "data/new_posts.csv", "--output", str(out),
                   "--json", cwd=folder)
    res = json.loads(proc.stdout)
    assert res["rows_in"] == res["scored"] == 200 and res["rejected"] == 0
    table = pq.read_table(out)
    assert table.num_rows == 200
    assert set(table.column_names) >= {"post_id", "score", "label", "model_version"}


def test_batch_scoring_keeps_rejected_rows_with_reasons(ran_project, tmp_path):
    folder, _ = ran_project
    path = tmp_path / "mixed.jsonl"
    rows = [RAW_ROWS[0], dict(RAW_ROWS[1], views="lots"),
            {k: v for k, v in RAW_ROWS[2].items() if k != "text"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    out = tmp_path / "scored.parquet"
    res = json.loads(run_cli("predict", "-i", str(path), "-o", str(out), "--json",
                             cwd=folder).stdout)
    assert (res["rows_in"], res["scored"], res["rejected"]) == (4, 1, 3)
    rej = pq.read_table(Path(res["rejected_output"])).to_pylist()
    rules = {r["_line"]: [x["rule"] for x in r["reasons"]] for r in rej}
    assert rules == {2: ["type"], 3: ["required"], 4: ["parse"]}


def test_scoring_writes_csv_and_jsonl_with_the_same_predictions(ran_project,
                                                                 tmp_path):
    import pyarrow.csv as pacsv

    folder, _ = ran_project
    got = {}
    for ext in ("parquet", "csv", "jsonl"):
        out = tmp_path / f"scored.{ext}"
        run_cli("predict", "-i", "data/new_posts.csv", "-o", str(out), cwd=folder)
        if ext == "parquet":
            rows = pq.read_table(out).to_pylist()
        elif ext == "csv":
            rows = pacsv.read_csv(out).to_pylist()
        else:
            rows = [json.loads(line) for line in out.read_text().splitlines()]
        got[ext] = [(r["post_id"], round(r["score"], 9), r["label"]) for r in rows]
    assert len(got["parquet"]) == 200
    assert got["parquet"] == got["csv"] == got["jsonl"]
    proc = run_cli("predict", "-i", "data/new_posts.csv", "-o",
                   str(tmp_path / "x.xlsx"), cwd=folder, check=False)
    assert proc.returncode == 2 and ".parquet, .csv, .jsonl" in proc.stderr


def test_scoring_refuses_an_unrelated_file_and_warns_on_empty_rows(ran_project,
                                                                  tmp_path):
    """An unrelated file used to get a score per row, all identical."""
    folder, _ = ran_project
    other = tmp_path / "iris.csv"
    other.write_text("sepal,petal,species\n1.0,2.0,setosa\n3.0,4.0,virginica\n")
    proc = run_cli("predict", "-i", str(other), "-o", str(tmp_path / "s.parquet"),
                   cwd=folder, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "0 of the 9 columns model" in proc.stderr and "missing: " in proc.stderr


def test_scoring_rows_without_any_feature_value_warns(tmp_path):
    """Rows that carry no value the model reads all get the same guess: the
    result says so instead of passing them off as predictions."""
    folder = tmp_path / "p"
    (folder / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=120)
    lines = [f"{a:.4f},{b:.4f},{int(a + b > 0)}" for a, b in
             zip(x, rng.normal(size=120), strict=True)]
    (folder / "data" / "m.csv").write_text("x,z,y\n" + "\n".join(lines) + "\n")
    (folder / "mlsd.yaml").write_text(yaml.safe_dump({
        "name": "mini", "problem": {"task": "binary", "target": "y", "positive": 1},
        "sources": {"m": {"path": "data/m.csv"}},
        "features": [{"column": "x"}, {"column": "z"}]}))
    run_cli("run", "--until", "train", cwd=folder)
    new = tmp_path / "new.csv"
    new.write_text("x,z\n,\n,\n,\n0.5,0.1\n")
    res = json.loads(run_cli("predict", "-i", str(new), "-o",
                             str(tmp_path / "s.csv"), "--json", cwd=folder).stdout)
    assert res["scored"] == 4 and res["rows_without_features"] == 3
    assert res["warnings"] == ["3 of 4 scored rows have no value in any column the "
                               "model reads (x, z): their predictions are all the "
                               "same guess"]
