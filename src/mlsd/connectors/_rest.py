"""The REST connector: JSON pages over HTTP (httpx), with pagination, retries
with backoff on 429 and 5xx, a rate limit, and auth headers from the environment.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa

from ..errors import DataError
from ..formats import DEFAULT_CHUNK_ROWS
from ..formats._records import batched_records
from ._files import FileInfo

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RETRY_STATUS = {429, 500, 502, 503, 504}


def expand_env(text: str, where: str) -> str:
    """Replace ``${NAME}`` by the environment variable NAME (an error if unset)."""
    def sub(m: re.Match) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            raise DataError(f"{where}: the environment variable {m.group(1)} is "
                            f"not set")
        return value
    return _ENV.sub(sub, text)


def dig(doc: Any, path: str | None) -> Any:
    """The value at a dotted path (``data.items``) of a JSON document."""
    if not path:
        return doc
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


class RestConnector:
    """Reads records from a paginated JSON API.

    Parameters
    ----------
    url : str
        The first page's URL (only 127.0.0.1 in tests; any host in use).
    records : str, optional
        Dotted path to the list of records in a page; by default the page itself
        when it is a list, else its only list value.
    pagination : str
        ``none``, ``page`` (``page_param`` = 1, 2, ...), ``offset``
        (``offset_param`` += records), ``cursor`` (the next cursor at
        ``cursor_path``, sent as ``cursor_param``) or ``link`` (the
        ``Link: <...>; rel="next"`` header).
    headers, params : dict
        Sent with every request; ``${NAME}`` in a header is read from the
        environment, so tokens stay out of the spec.
    rate_limit : float, optional
        Requests per second at most.
    retries, backoff : int, float
        Attempts after a 429, a 5xx or a transport error, waiting
        ``backoff * 2**attempt`` seconds (or the server's ``Retry-After``).
    """

    supports_streaming = True

    def __init__(self, *, url: str, records: str | None = None,
                 pagination: str = "none", page_param: str = "page",
                 offset_param: str = "offset", size_param: str | None = None,
                 page_size: int | None = None, cursor_param: str = "cursor",
                 cursor_path: str | None = None, start_page: int = 1,
                 headers: dict[str, str] | None = None,
                 params: dict[str, Any] | None = None,
                 rate_limit: float | None = None, retries: int = 5,
                 backoff: float = 0.5, timeout: float = 30.0,
                 max_pages: int | None = None):
        self.url = url
        self.records = records
        self.pagination = pagination
        self.page_param = page_param
        self.offset_param = offset_param
        self.size_param = size_param
        self.page_size = page_size
        self.cursor_param = cursor_param
        self.cursor_path = cursor_path
        self.start_page = start_page
        self.headers = headers or {}
        self.params = params or {}
        self.rate_limit = rate_limit
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.max_pages = max_pages

    @property
    def display(self) -> str:
        return str(httpx.URL(self.url).copy_with(query=None))

    def info(self) -> FileInfo:
        digest = hashlib.sha256(f"{self.display} {sorted(self.params.items())}"
                                .encode()).hexdigest()
        return FileInfo(self.display, digest, 0)

    # HTTP ---------------------------------------------------------------------
    def _get(self, client: httpx.Client, url: str, params: dict) -> httpx.Response:
        for attempt in range(self.retries + 1):
            if self.rate_limit:
                wait = self._last + 1.0 / self.rate_limit - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            self._last = time.monotonic()
            self.stats_["requests"] += 1
            try:
                # None, not {}: an empty mapping would drop a next link's query
                resp = client.get(url, params=params or None)
            except httpx.TransportError as err:
                if attempt == self.retries:
                    raise DataError(f"{self.display}: {type(err).__name__} after "
                                    f"{attempt + 1} attempts: {err}") from None
                self.stats_["retries"] += 1
                time.sleep(self.backoff * 2**attempt)
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.retries:
                self.stats_["retries"] += 1
                retry_after = resp.headers.get("retry-after", "")
                delay = (float(retry_after) if retry_after.replace(".", "", 1)
                         .isdigit() else self.backoff * 2**attempt)
                time.sleep(min(delay, 60.0))
                continue
            if resp.status_code >= 400:
                raise DataError(f"{self.display}: HTTP {resp.status_code} on "
                                f"{resp.request.url.copy_with(query=None)}: "
                                f"{resp.text[:200]}")
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _records_of(self, doc: Any, page: int) -> list:
        found = dig(doc, self.records)
        if self.records is None and isinstance(doc, dict):
            lists = [v for v in doc.values() if isinstance(v, list)]
            found = lists[0] if len(lists) == 1 else None
        if not isinstance(found, list):
            raise DataError(f"{self.display}: page {page} holds no list of records"
                            + (f" at {self.records!r}" if self.records else
                               "; set `records:` to its path"))
        return found

    def pages(self) -> Iterator[list]:
        """The record lists of every page, following the pagination."""
        self.stats_ = {"requests": 0, "retries": 0, "pages": 0}
        self._last = 0.0
        headers = {k: expand_env(v, f"headers.{k}") for k, v in self.headers.items()}
        params = dict(self.params)
        if self.size_param and self.page_size:
            params[self.size_param] = self.page_size
        url: str | None = self.url
        page, offset = self.start_page, 0
        followed: set[str] = set()  # cursors or links already followed
        with httpx.Client(headers=headers, timeout=self.timeout,
                          follow_redirects=True) as client:
            while url is not None:
                if self.pagination == "page":
                    params[self.page_param] = page
                elif self.pagination == "offset":
                    params[self.offset_param] = offset
                resp = self._get(client, url, params)
                try:
                    doc = resp.json()
                except ValueError:
                    raise DataError(f"{self.display}: page {self.stats_['pages'] + 1}"
                                    f" is not JSON") from None
                records = self._records_of(doc, self.stats_["pages"] + 1)
                self.stats_["pages"] += 1
                yield records
                if self.max_pages and self.stats_["pages"] >= self.max_pages:
                    return
                if self.pagination == "none":
                    return
                if self.pagination == "page":
                    if not records:
                        return
                    page += 1
                elif self.pagination == "offset":
                    if not records or (self.page_size and len(records) <
                                       self.page_size):
                        return
                    offset += len(records)
                elif self.pagination == "cursor":
                    cursor = dig(doc, self.cursor_path)
                    if not cursor:
                        return
                    self._no_loop(followed, str(cursor))
                    params[self.cursor_param] = cursor
                elif self.pagination == "link":
                    nxt = resp.links.get("next", {}).get("url")
                    if not nxt:
                        return
                    self._no_loop(followed, nxt)
                    url, params = nxt, {}

    def _no_loop(self, followed: set[str], nxt: str) -> None:
        if nxt in followed:
            raise DataError(f"{self.display}: the pagination loops (page "
                            f"{self.stats_['pages']} points back to {nxt!r})")
        followed.add(nxt)

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for records in self.pages():
            for r in records:
                if isinstance(r, dict):
                    seen.update(dict.fromkeys(r))
            if len(seen) and self.stats_["pages"] >= 1:
                break
        if not seen:
            raise DataError(f"{self.display}: the first page holds no record")
        return list(seen)

    def read(self, columns: list[str], *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
             strict: bool = True) -> Iterator[tuple[FileInfo, pa.RecordBatch]]:
        """Raw batches of the records of every page (values as text, as JSON)."""
        info = self.info()

        def items():
            n = 0
            for records in self.pages():
                for r in records:
                    n += 1
                    if isinstance(r, dict):
                        yield n, r, None
                    else:
                        yield n, None, (f"broken record: expected a JSON object, "
                                        f"found {type(r).__name__}")
        for batch in batched_records(items(), columns, chunk_rows=chunk_rows,
                                     typed=False, strict=strict):
            yield info, batch
