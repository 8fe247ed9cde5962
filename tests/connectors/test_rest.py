"""The REST connector against a small HTTP server on 127.0.0.1 that paginates,
needs a token, and answers a 429 and a 500 on the way."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from deltalake import DeltaTable

from mlsd.connectors import RestConnector
from mlsd.errors import DataError
from mlsd.pipeline import Project, ingest

RECORDS = [{"id": i, "name": f"item {i}", "price": round(i * 1.5, 2),
            "tags": ["a", "b"] if i % 2 else []} for i in range(1, 48)]
RECORDS[10]["price"] = "free"  # one bad value, for the quarantine


class Api(BaseHTTPRequestHandler):
    hits: list = []
    fail_once = {("page", 2): 429, ("page", 3): 500}

    def log_message(self, *args):  # keep the test output quiet
        pass

    def _send(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        Api.hits.append((url.path, q))
        if self.headers.get("authorization") != "Bearer s3cret":
            return self._send(401, {"error": "token"})
        size = int(q.get("per_page", 10))
        if url.path == "/pages":
            page = int(q.get("page", 1))
            status = Api.fail_once.pop(("page", page), None)
            if status:
                return self._send(status, {"error": "try again"},
                                  {"Retry-After": "0"} if status == 429 else None)
            chunk = RECORDS[(page - 1) * size: page * size]
            return self._send(200, {"data": {"items": chunk}, "page": page})
        if url.path == "/offset":
            off = int(q.get("offset", 0))
            return self._send(200, RECORDS[off: off + size])
        if url.path == "/cursor":
            at = int(q.get("cursor", 0))
            nxt = at + size if at + size < len(RECORDS) else None
            return self._send(200, {"items": RECORDS[at: at + size],
                                    "meta": {"next": nxt}})
        if url.path == "/link":
            page = int(q.get("p", 1))
            headers = {}
            if page * size < len(RECORDS):
                host = self.headers["host"]
                headers["Link"] = (f'<http://{host}/link?p={page + 1}&per_page={size}>;'
                                   f' rel="next"')
            return self._send(200, RECORDS[(page - 1) * size: page * size], headers)
        return self._send(404, {})


@pytest.fixture()
def api(monkeypatch):
    Api.hits = []
    Api.fail_once = {("page", 2): 429, ("page", 3): 500}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("API_TOKEN", "s3cret")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


AUTH = {"Authorization": "Bearer ${API_TOKEN}"}


def _all(conn: RestConnector) -> list:
    return [r for page in conn.pages() for r in page]


def test_page_pagination_with_retries_through_ingest(api, tmp_path):
    spec = {"name": "shop", "problem": {"task": "regression", "target": "price"},
            "sources": {"items": {
                "endpoint": f"{api}/pages", "records": "data.items",
                "pagination": "page", "size_param": "per_page", "page_size": 10,
                "headers": AUTH, "backoff": 0.01, "key": "id"}},
            "features": [{"column": "id"}]}
    (tmp_path / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    res = ingest(Project.find(start=tmp_path))["sources"][0]
    assert (res["rows_in"], res["rows_stored"], res["rows_quarantined"]) == (47, 46, 1)
    assert res["reasons"] == {"price: type": 1}
    pages = [q.get("page") for path, q in Api.hits if path == "/pages"]
    assert Api.fail_once == {}  # the 429 and the 500 were answered...
    first2, first3 = pages.index("2"), pages.index("3")
    assert pages[first2 + 1] == "2" and pages[first3 + 1] == "3"  # ...and retried
    table = DeltaTable(str(tmp_path / ".mlsd/lake/sources/items")).to_pyarrow_table()
    assert sorted(table.column("id").to_pylist()) == [i for i in range(1, 48)
                                                      if i != 11]
    by_id = {r["id"]: r for r in table.to_pylist()}
    assert json.loads(by_id[1]["tags"]) == ["a", "b"]
    # the same answer again: no new version
    Api.fail_once = {}
    again = ingest(Project.find(start=tmp_path))["sources"][0]
    assert again["skipped"] and again["version"] == res["version"]
    assert "s3cret" not in (tmp_path / "mlsd.yaml").read_text()


@pytest.mark.parametrize("kind, path, extra", [
    ("offset", "/offset", {}),
    ("cursor", "/cursor", {"cursor_path": "meta.next", "records": "items"}),
    ("link", "/link", {}),
])
def test_other_paginations(api, kind, path, extra):
    conn = RestConnector(url=f"{api}{path}", pagination=kind, headers=AUTH,
                         size_param="per_page", page_size=10, **extra)
    assert [r["id"] for r in _all(conn)] == list(range(1, 48))
    assert conn.stats_["pages"] >= 5


def test_rate_limit_spaces_requests(api):
    import time

    conn = RestConnector(url=f"{api}/offset", pagination="offset", headers=AUTH,
                         size_param="per_page", page_size=10, rate_limit=20)
    start = time.monotonic()
    _all(conn)
    # 5 requests at 20 per second: at least 4 gaps of 50 ms
    assert time.monotonic() - start >= 0.2


def test_errors_are_clear(api, monkeypatch):
    conn = RestConnector(url=f"{api}/pages", pagination="page", headers={},
                         retries=0)
    with pytest.raises(DataError, match="HTTP 401"):
        _all(conn)
    monkeypatch.delenv("API_TOKEN")
    with pytest.raises(DataError, match="API_TOKEN"):
        _all(RestConnector(url=f"{api}/pages", headers=AUTH))
    monkeypatch.setenv("API_TOKEN", "s3cret")
    with pytest.raises(DataError, match="HTTP 429"):
        _all(RestConnector(url=f"{api}/pages", pagination="page", headers=AUTH,
                           records="data.items", retries=0, page_size=10,
                           size_param="per_page", start_page=2))
    with pytest.raises(DataError, match="no list of records"):
        _all(RestConnector(url=f"{api}/pages", headers=AUTH, records="nope"))
    dead = RestConnector(url="http://127.0.0.1:9/x", retries=1, backoff=0.01)
    with pytest.raises(DataError, match="after 2 attempts"):
        _all(dead)
