from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlsd.serve import create_app, request_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(ran_project):
    folder, summary = ran_project
    with TestClient(create_app(Path(folder) / summary["paths"]["model"])) as c:
        yield c, summary


def test_too_many_rows_is_422(client):
    c, _ = client
    from mlsd.serve._app import MAX_ROWS

    r = c.post("/predict", json=[{}] * (MAX_ROWS + 1))
    assert r.status_code == 422 and "at most" in r.json()["detail"][0]["msg"]


def test_every_response_carries_the_version(client):
    c, s = client
    for path in ("/health", "/ready", "/model"):
        r = c.get(path)
        assert r.headers["x-model-version"] == s["model"]["model_id"]
        assert r.json()["model_version"] == s["model"]["model_id"]
    r = c.get("/nope")
    assert r.status_code == 404 and r.headers["x-model-version"]


def test_request_model_follows_the_input_schema():
    Row = request_model({"columns": {"a": "int64", "b": "string", "t": "timestamp"},
                         "required": ["a"]})
    assert Row(a=3).a == 3 and Row(a=1).b is None
    with pytest.raises(ValueError):  # "7" is text, not a number
        Row(a="3")
    with pytest.raises(ValueError):
        Row(b="x")
    with pytest.raises(ValueError):
        Row(a=1, c=2)


def test_a_struct_column_is_a_nested_request_object():
    from mlsd.serve import rows_to_arrow

    schema = {"columns": {"a": "int64", "addr": {"city": "string",
                                                  "geo": {"lat": "float64"}}}}
    Row = request_model(schema)
    row = Row(a=1, addr={"city": "Lyon", "geo": {"lat": 45.7}})
    assert row.addr.geo.lat == 45.7
    with pytest.raises(ValueError, match="floor"):
        Row(a=1, addr={"city": "Lyon", "floor": 2})  # unknown nested field
    table = rows_to_arrow([row.model_dump(), Row(a=2).model_dump()], schema)
    assert table.column("addr").to_pylist() == [
        {"city": "Lyon", "geo": {"lat": 45.7}}, None]
    assert table.schema.field("addr").type.field("geo").type.field("lat").type \
        == "double"


def test_a_row_typed_from_json_with_or_without_a_struct_column():
    """`serve --stream` types a message from its bytes by a TypedDict of the
    request model's types, or by the model itself when a column is a
    struct: the same row as validate() either way, every column present in
    the model's order, the label dropped, the same refusals."""
    from types import SimpleNamespace

    from pydantic import TypeAdapter, ValidationError

    from mlsd.serve._app import Served

    def served(schema):
        s = Served.__new__(Served)  # the parts typing needs, no model
        s.artifact = SimpleNamespace(input_schema=schema)
        s.Row = request_model(schema, max_string_chars=5)
        s.one, s.many = TypeAdapter(s.Row), TypeAdapter(list[s.Row])
        s.ignored, s.max_string_chars, s._from_json = ("label",), 5, None
        return s
    flat = {"columns": {"b": "string", "a": "int64", "t": "timestamp"},
            "required": ["a"]}
    nested = {"columns": {"a": "int64", "addr": {"city": "string"}},
              "required": ["a"]}
    for schema, body in ((flat, '{"t": "2024-05-01T10:00:00Z", "a": 3, "label": 1}'),
                         (flat, '{"a": 3}'),
                         (nested, '{"addr": {"city": "Lyon"}, "a": 1, "label": 0}')):
        s = served(schema)
        want = s.validate(json.loads(body))[0][0]
        got = s.row_from_json(body)
        assert got == want and list(got) == list(want) == list(schema["columns"])
    for schema, body in ((flat, '{"b": "x"}'), (flat, '{"a": 1.5}'),
                         (flat, '{"a": 1, "b": "toolong"}'), (flat, '{"a": 1, "z": 1}'),
                         (flat, '{"a": 1, "b": "\\ud800"}'),
                         (nested, '{"a": 1, "addr": {"floor": 2}}')):
        with pytest.raises(ValidationError):
            served(schema).row_from_json(body)


def test_an_integer_past_2_53_in_a_float_column_is_a_number_not_a_500(client):
    """schemathesis sent 2**53 + 1 for a float column: Arrow refused to make it
    a double (it cannot be exact) and the batch path answered 500."""
    from mlsd.serve import rows_to_arrow

    table = rows_to_arrow([{"x": 2**53 + 1}, {"x": 1.5}, {"x": None}],
                          {"columns": {"x": "float64"}})
    assert table.column("x").to_pylist() == [float(2**53), 1.5, None]
    c, _ = client
    row = {"post_id": "p1", "author_id": "a1", "text": "free crypto offer",
           "author_account_age_days": 2**53 + 1, "created_at": "2024-05-01T10:00:00"}
    for path, body in (("/predict", row), ("/predict?explain=true", [row, row])):
        r = c.post(path, json=body)
        assert r.status_code == 200, (path, r.text)


def test_a_row_copied_from_the_training_data_is_scored(client):
    """The label and mlsd's provenance columns are accepted and ignored (and
    said so in /docs); any other unknown field is still a 422."""
    c, s = client
    row = {"post_id": "p1", "author_id": "a1", "text": "free crypto offer",
           "likes": 1, "created_at": "2024-05-01T10:00:00"}
    copied = {**row, "is_spam": True, "_source": "data/posts_export.csv",
              "_line": 12, "_load_id": "l1", "_source_sha256": "ab"}
    r = c.post("/predict", json=[row, copied])
    assert r.status_code == 200, r.json()
    first, second = r.json()["predictions"]
    rid = r.json()["request_id"]
    assert (first.pop("request_id"), second.pop("request_id")) == (f"{rid}.0",
                                                                   f"{rid}.1")
    assert first == second
    r = c.post("/predict", json={**row, "colour": "red"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body",
                                                                    "colour"]
    spec = c.get("/openapi.json").json()
    assert "`is_spam`, `_source`" in spec["info"]["description"]


def test_docs_load_their_assets_from_the_service_not_a_cdn(client):
    """/docs was blank offline: Swagger UI came from a CDN."""
    import re

    c, _ = client
    for page in ("/docs", "/redoc"):
        html = c.get(page).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls, page
        assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], \
            (page, urls)
        for u in urls:
            if u.endswith((".js", ".css")):
                r = c.get(u)
                assert r.status_code == 200 and len(r.content) > 10_000, u
