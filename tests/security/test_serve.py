"""The REST service never answers 500 to what a client sends (issue 11):
non-JSON numbers, integers past int64 and lone surrogates are a 422 naming
the field; a body past the limit is a 413 read no further; a 422 never echoes
a large input; text fields are capped; every answer carries the version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlsd.serve import create_app
from mlsd.spec import ServeSpec


@pytest.fixture(scope="module")
def client(ran_project):
    folder, summary = ran_project
    settings = ServeSpec(max_body_bytes=64 * 1024, max_string_chars=2_000)
    with TestClient(create_app(Path(folder) / summary["paths"]["model"], settings),
                    raise_server_exceptions=False) as c:
        yield c


def _post(client, text: str):
    return client.post("/predict", content=text.encode("utf-8", "surrogatepass"),
                       headers={"content-type": "application/json"})


@pytest.mark.parametrize(("field", "raw", "kind"), [
    ("likes", "NaN", "int_type"),
    ("views", "Infinity", None),
    ("views", "-Infinity", None),
    ("likes", str(2**70), "less_than_equal"),
    ("likes", '"7"', "int_type"),
    ("text", '"\\ud800 lonely"', "string_unicode"),
])
def test_bad_values_are_a_422_naming_the_field(client, field, raw, kind):
    r = _post(client, f'{{"{field}": {raw}}}')
    assert r.status_code == 422, r.text
    assert r.headers["x-model-version"]
    errors = r.json()["detail"]
    assert any(e["loc"] == ["body", field] for e in errors), errors
    if kind:
        assert any(e["type"] == kind for e in errors if e["loc"] == ["body", field])


def test_a_body_past_the_limit_is_413_and_small(client):
    big = json.dumps([{"text": "x" * 1_000}] * 200)  # ~200 KB > 64 KB
    r = _post(client, big)
    assert r.status_code == 413 and len(r.content) < 1_000
    assert r.headers["x-model-version"]


def test_a_422_never_echoes_a_large_input(client):
    r = _post(client, json.dumps({"text": "y" * 5_000}))  # over 2,000 chars
    assert r.status_code == 422 and len(r.content) < 1_000
    [e] = [e for e in r.json()["detail"] if e["loc"] == ["body", "text"]]
    assert e["type"] == "string_too_long" and len(e["input"]) <= 83
    r = _post(client, json.dumps([{"likes": "z" * 3_000, "dislikes": "w" * 3_000}]
                                 * 10))
    assert r.status_code == 422 and len(r.content) < 20_000  # not 60 KB of input
    assert all(len(str(e.get("input", ""))) <= 83 for e in r.json()["detail"])


def test_invalid_json_is_a_422(client):
    r = _post(client, '{"likes": 1,')
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


def test_health_and_predict_still_work(client):
    assert client.get("/health").json()["status"] == "ok"
    r = _post(client, json.dumps({"post_id": "p1", "author_id": "u1", "likes": 3,
                                  "created_at": "2024-05-01T10:00:00Z",
                                  "text": "hello"}))
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
