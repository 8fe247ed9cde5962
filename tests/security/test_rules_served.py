"""Serving and `mlsd predict` enforce the spec's validation rules with one
validator (issue 11): `likes: -5` breaks the example's range, and both paths
say so for the same rows; a valid row gets the same score from both."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from mlsd.serve import create_app
from tests._helpers import run_cli

_ALL = {"dislikes": 1, "views": 40, "author_account_age_days": 12,
        "author_posts_before": 3, "author_country": "FR"}
ROWS = [
    {"post_id": "n1", "author_id": "u1", "created_at": "2024-05-01T10:00:00Z",
     "text": "buy cheap followers now", "likes": 3, **_ALL},
    {"post_id": "n2", "author_id": "u2", "created_at": "2024-05-01T10:00:00Z",
     "text": "nice photo", "likes": -5, **_ALL},
]


def test_the_same_rows_get_the_same_answer_served_and_in_batch(ran_project,
                                                                 tmp_path):
    folder, summary = ran_project
    model = Path(folder) / summary["paths"]["model"]
    rules = json.loads((model / "input_schema.json").read_text())["rules"]
    assert rules["ranges"]["likes"] == [0, None]
    with TestClient(create_app(model)) as client:
        r = client.post("/predict", json=ROWS)
        assert r.status_code == 422, r.text
        [err] = r.json()["detail"]
        assert err["loc"] == ["body", 1, "likes"] and err["type"] == "range"
        single = client.post("/predict", json=ROWS[1])
        assert single.status_code == 422
        assert single.json()["detail"][0]["loc"] == ["body", "likes"]
        served = client.post("/predict", json=ROWS[0]).json()["predictions"][0]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "scored.parquet"
    res = json.loads(run_cli("predict", "-i", str(src), "-o", str(out), "--json",
                             cwd=folder).stdout)
    assert res["scored"] == 1 and res["rejected"] == 1
    rejected = pq.read_table(res["rejected_output"]).to_pylist()
    assert [r["rule"] for r in rejected[0]["reasons"]] == ["range"]
    scored = pq.read_table(out).to_pylist()
    assert abs(scored[0]["score"] - served["score"]) < 1e-9
