"""The REST service of one model artifact (FastAPI).

The request model is generated from the artifact's input schema, so ``/docs``
shows the real field names and types and a wrong or missing field gets FastAPI's
422 with the field's location.

Two paths score a request, with the same answers (tests hold them equal):

* the **online fast path**: a few rows, each validated by the spec's rules one
  row at a time (``Validator.check_row``), turned into model inputs by the
  features' one-row path (``FeaturePipeline.entries``) and scored by the
  model; no Arrow table, no pandas, no thread hop;
* the **batch path**: many rows, or a model or rules that need it (SQL checks,
  derived columns, several objectives, intervals, nested columns): a typed
  Arrow table through the artifact's own ``apply``, as batch scoring does.

Every response carries a request id (``X-Request-Id``, the client's if it
sent a sane one) and the model version; each prediction is logged in the
background (``._log``), feedback arrives on ``/feedback``, ``/metrics`` speaks
Prometheus, and a promoted model replaces the served one without a failed
request (``reload_seconds``).
"""


import asyncio
import hmac
import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NotRequired
from urllib.parse import parse_qs

import anyio
import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
    with_config,
)
from pydantic_core import to_json
from typing_extensions import TypedDict

from .._threads import usable_cores
from .._windows import Window
from ..errors import ModelError
from ..etl import PROVENANCE, arrow_type
from ..formats import exported_name
from ..models import ModelArtifact
from ..models._artifact import row_validator
from ..spec import ServeSpec
from ._metrics import ENDPOINTS

MAX_ROWS = 10_000
INLINE_ROWS = 8  # fast-path requests this small score on the event loop
FAST_ROWS = 256  # more rows than this take the batch path
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # a client's own id, if sane
OPEN_PATHS = ("/health", "/ready")  # answered without the API key
EXPLAIN_TOP = 5  # source columns an explanation names
INT64 = (-(2**63), 2**63 - 1)
ECHO_CHARS = 80  # a 422 shows at most this much of a rejected value


def _valid_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (a lone surrogate)") from None
    return value


def _py_types(max_string_chars: int, check_text: bool = True) -> dict[str, Any]:
    """The request type of each logical type: numbers are numbers (``"7"`` is
    not one), integers fit int64, floats are finite, text is valid Unicode
    (``check_text``) and at most ``max_string_chars`` long."""
    text = Annotated[str, StringConstraints(max_length=max_string_chars)]
    return {
        "string": Annotated[text, AfterValidator(_valid_text)] if check_text else text,
        "int64": Annotated[int, Strict(), Field(ge=INT64[0], le=INT64[1])],
        "float64": Annotated[float, Strict(), Field(allow_inf_nan=False)],
        "bool": Annotated[bool, Strict()],
        "timestamp": datetime,
    }


def _py_type(typ: Any, name: str, types: dict[str, Any]) -> Any:
    """The Python type of a logical type; a struct is a nested model."""
    if isinstance(typ, dict):
        return create_model(name, __config__=ConfigDict(extra="forbid"),
                            **{k: (_py_type(v, f"{name}_{k}", types) | None, None)
                               for k, v in typ.items()})
    return types[typ]


def request_model(schema: dict[str, Any], *, max_string_chars: int = 10_000
                  ) -> type[BaseModel]:
    """A pydantic model of one input row, from the artifact's input schema."""
    types = _py_types(max_string_chars)
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for col, typ in schema["columns"].items():
        py = _py_type(typ, f"InputRow_{col}", types)
        fields[col] = (py, ...) if col in required else (py | None, None)
    return create_model("InputRow", __config__=ConfigDict(extra="forbid"),
                        **fields)


class _Refused(Exception):
    """A request refused before validation: its status and message."""

    def __init__(self, status: int, loc: tuple, msg: str, kind: str):
        super().__init__(msg)
        self.status, self.loc, self.msg, self.kind = status, loc, msg, kind


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, read at most ``limit`` bytes (413 past it,
    before the rest is read). ``NaN`` and ``Infinity`` (which Python's parser
    accepts and JSON does not) become floats that validation then refuses,
    naming the field."""
    return await asgi_json(request.scope, request.receive, limit)


async def asgi_json(scope, receive, limit: int) -> Any:
    """:func:`read_json` on the ASGI scope and channel themselves."""
    return parse_json(await asgi_body(scope, receive, limit))


async def asgi_body(scope, receive, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes (413 past it, before the
    rest is read)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _Refused(413, ("body",), f"the body is {int(value):,} bytes; at "
                           f"most {limit:,} are accepted", "too_large")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            raise _Refused(400, ("body",), "the client disconnected", "disconnected")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise _Refused(413, ("body",), f"the body is over {limit:,} bytes, "
                           f"the most accepted", "too_large")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """A body's JSON (``NaN`` and ``Infinity`` as floats, see
    :func:`read_json`), or a 422 that says why not."""
    try:
        return json.loads(raw, parse_constant=float)
    except ValueError as err:  # JSONDecodeError, bad UTF-8, NaN
        raise _Refused(422, ("body",), f"not valid JSON: {str(err)[:200]}",
                       "json_invalid") from None


def _short(value: Any) -> Any:
    """A rejected value as a 422 may show it: short scalars as they are,
    anything else as a short, escaped excerpt (never the whole input)."""
    if value is None or isinstance(value, bool | int) and abs(value) < 10**18:
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."


def _errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors safe to send: location, message, type, and a short
    excerpt of the value (JSON-encodable whatever was sent)."""
    out = []
    for e in errors:
        item = {"loc": [str(p) if not isinstance(p, int) else p
                        for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        if "input" in e:
            item["input"] = _short(e["input"])
        out.append(item)
    return out


def rows_to_arrow(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pa.Table:
    """Validated rows as a typed Arrow table (naive times are taken as UTC)."""
    arrays, names = [], []
    for col, typ in schema["columns"].items():
        values = [r.get(col) for r in rows]
        if typ == "timestamp":
            values = [None if v is None else (v.replace(tzinfo=UTC) if v.tzinfo is
                                              None else v.astimezone(UTC))
                      for v in values]
        arrow = arrow_type(typ)
        if pa.types.is_floating(arrow):  # Arrow refuses ints past 2**53 there
            values = [float(v) if type(v) is int else v for v in values]
        arrays.append(pa.array(values, type=arrow))
        names.append(col)
    return pa.Table.from_arrays(arrays, names=names)


def _without(row: Any, fields: tuple[str, ...]) -> Any:
    if not isinstance(row, dict):
        return row  # validation says what is wrong with it
    return {k: v for k, v in row.items() if k not in fields}


@dataclass(frozen=True)
class ServiceLog:
    """Where the service logs its predictions and feedback: the project's
    lake (its ``.mlsd`` folder), the dataset name (the spec's ``name``), the
    column that is the item key (the spec's ``key``)."""

    lake_root: Path
    name: str
    lake_url: str | None = None  # the tables on object storage (lake.url)
    item_key: str | None = None
    flush_seconds: float = 1.0
    batch_rows: int = 10_000
    retention_days: float | None = None

    def lake(self):
        """The lake the log's tables are in."""
        from ..lake import Lake

        return Lake(root=self.lake_root, url=self.lake_url)


class Served:
    """One model ready to answer: the artifact, its request model, the
    validator of the spec's rules, and whether the fast path applies."""

    def __init__(self, artifact: ModelArtifact, settings: ServeSpec):
        self.artifact = artifact
        self.version = artifact.model_id
        schema = artifact.input_schema
        self.max_string_chars = settings.max_string_chars
        self.Row = request_model(schema, max_string_chars=settings.max_string_chars)
        self.one, self.many = TypeAdapter(self.Row), TypeAdapter(list[self.Row])
        self.validator = row_validator(schema)
        # a row copied from the training data carries the label and mlsd's
        # provenance: accepted and dropped before validation; other unknown
        # fields still get a 422
        self.ignored = tuple(dict.fromkeys([artifact.manifest["target"],
                                            *schema.get("targets", []),
                                            *PROVENANCE,
                                            *map(exported_name, PROVENANCE)]))
        self.windows = [Window.from_dict(d) for d in schema.get("windows") or []]
        self._online = None
        self.fast = (self.validator.row_path() and not schema.get("derive")
                     and not self.windows
                     and artifact.objectives is None and artifact.intervals is None)
        self.pipeline = artifact.pipeline
        self.width = len(artifact.pipeline.names())
        self.blocks = artifact.pipeline.block_slices()
        self._from_json: TypeAdapter | None = None

    def row_from_json(self, body: bytes | str) -> dict[str, Any]:
        """One row typed straight from its JSON text, as :meth:`validate`
        types it once parsed (the same field types; the ignored fields
        accepted and dropped; every column, None where missing), in one pass
        of pydantic-core: a third of the time of parsing with ``json`` and
        then validating. Raises ``ValidationError`` (bad JSON, not an object,
        a bad field): the caller then takes the way that says which and why
        as a request would."""
        if self._from_json is None:
            self._from_json = self._json_row()
        blank, adapter = self._from_json
        if blank is None:  # a struct column: the model, nested models and all
            return adapter.dump_python(adapter.validate_json(body))
        got = adapter.validate_json(body)
        row = blank.copy()  # the columns in the model's order, as it dumps them
        row.update(got)
        if len(row) > len(blank):  # an ignored field came with it
            return {c: row[c] for c in blank}
        return row

    def _json_row(self) -> tuple[dict[str, None] | None, TypeAdapter]:
        """How :meth:`row_from_json` types a row: with no struct column, a
        TypedDict of the request model's field types (no model instance to
        make and dump: half the time), the text check left out since
        pydantic's JSON parser refuses a lone surrogate itself; else the
        request model."""
        schema = self.artifact.input_schema
        cols = schema["columns"]
        extra = [c for c in self.ignored if c not in cols]  # no input's name
        if not any(isinstance(t, dict) for t in cols.values()):
            types = _py_types(self.max_string_chars, check_text=False)
            required = set(schema.get("required", []))
            fields: dict[str, Any] = {
                c: types[t] if c in required else NotRequired[types[t] | None]
                for c, t in cols.items()}
            fields.update(dict.fromkeys(extra, NotRequired[Any]))
            row = with_config(ConfigDict(extra="forbid"))(
                TypedDict("InputRowMessage", fields))
            return dict.fromkeys(cols), TypeAdapter(row)
        names: dict[str, Any] = {}
        for c in extra:
            name = f"ignored_{len(names)}"
            while name in self.Row.model_fields:
                name += "_"
            names[name] = (Any, Field(None, alias=c, exclude=True))
        return None, TypeAdapter(create_model("InputRowMessage", __base__=self.Row,
                                              **names))

    def validate(self, body: Any) -> tuple[list[dict[str, Any]], bool]:
        """The request's rows (one or a list), typed by the request model;
        whether it was a list. Errors name the row and the field once."""
        many = isinstance(body, list)
        if many:
            body = [_without(r, self.ignored) for r in body]
        else:
            body = _without(body, self.ignored)
        try:
            if many:
                if len(body) > MAX_ROWS:
                    raise RequestValidationError([{
                        "loc": ("body",), "type": "too_long", "input": len(body),
                        "msg": f"at most {MAX_ROWS} rows per request, got "
                               f"{len(body)}"}])
                rows = self.many.validate_python(body)
            else:
                rows = [self.one.validate_python(body)]
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(
                    include_url=False)]) from None
        return [r.model_dump() for r in rows], many

    def with_windows(self, table: pa.Table) -> pa.Table:
        """The stream features of typed rows, from the online store by each
        row's entity and time (no time: now), in one round trip."""
        if self._online is None:
            from .._windows import OnlineWindows

            self._online = OnlineWindows.connect(
                self.artifact.input_schema["online_store"], self.windows,
                timeout=2)
        now = datetime.now(UTC)
        times = {w.time for w in self.windows}
        rows = [{k: now if v is None and k in times else v for k, v in r.items()}
                for r in table.select(list(dict.fromkeys(
                    c for w in self.windows for c in (w.by, w.time)))).to_pylist()]
        try:
            values = self._online.values(rows)
        except Exception as err:  # noqa: BLE001 - the store is down: say so
            raise _Refused(503, ("online_store",), f"the online store cannot be "
                           f"read: {type(err).__name__}", "unavailable") from None
        for w in self.windows:
            typ = pa.int64() if w.agg == "count" else pa.float64()
            table = table.append_column(w.name, pa.array([v[w.name] for v in values],
                                                         typ))
        return table

    def fast_path(self, n: int, weights: str | None) -> bool:
        return self.fast and weights is None and n <= FAST_ROWS

    def score_fast(self, rows: list[dict[str, Any]], many: bool
                   ) -> list[dict[str, Any]]:
        """The online path: rules row by row, the features' one-row path, the
        model on the stacked rows."""
        import numpy as np
        import scipy.sparse as sp

        failed, entries = [], []
        for i, row in enumerate(rows):
            typed, reasons = self.validator.check_row(row)
            for c, rule, msg in reasons:
                failed.append({"loc": ("body", *((i,) if many else ()),
                                       *((c,) if c else ())),
                               "type": rule, "msg": msg})
            if not failed:
                j, v, _ = self.pipeline.entries(typed)
                entries.append((j, v))
        if failed:
            raise RequestValidationError(failed)
        learner = self.artifact.learner
        out = learner.predict_rows(entries, self.width)
        if out is None:  # no row path for this learner: one CSR matrix
            indptr = np.cumsum([0] + [len(j) for j, _ in entries])
            X = sp.csr_matrix((np.asarray([x for _, v in entries for x in v],
                                          dtype=np.float64),
                               np.asarray([x for j, _ in entries for x in j],
                                          dtype=np.int32), indptr),
                              shape=(len(rows), self.width))
            X.sort_indices()
            out = learner.predict(X)
        return self.artifact.decide(out)

    def explain(self, rows: list[dict[str, Any]], preds: list[dict[str, Any]],
                top: int = EXPLAIN_TOP) -> None:
        """Add each prediction's ``explanation``: the ``top`` source columns
        by |SHAP|, exact TreeSHAP by LightGBM itself (``pred_contrib``), in
        the model's raw output (log-odds for classes; for several classes,
        the decided one's), a feature that reads several columns split
        equally between them, as the report's SHAP shares are."""
        import numpy as np
        import scipy.sparse as sp

        art = self.artifact
        if not hasattr(art.learner, "booster_") or art.task == "multilabel" \
                or art.objectives is not None:
            raise RequestValidationError([{
                "loc": ("query", "explain"), "type": "value_error",
                "msg": f"explain=true needs a LightGBM model of one target; "
                       f"this one is {art.manifest['kind']} ({art.task})"}])
        if self.fast:  # the rows as the fast path saw them
            entries = [self.pipeline.entries(self.validator.check_row(r)[0])[:2]
                       for r in rows]
            indptr = np.cumsum([0] + [len(j) for j, _ in entries])
            X = sp.csr_matrix((np.asarray([x for _, v in entries for x in v], float),
                               np.asarray([x for j, _ in entries for x in j],
                                          np.int32), indptr),
                              shape=(len(rows), self.width))
            X.sort_indices()
        else:  # as the batch path did: typed, derived columns added
            from ..models._artifact import derive_columns

            table = rows_to_arrow(rows, art.input_schema)
            typed, _ = self.validator.typed(table.to_batches()[0])
            table = pa.table({c: typed[c] for c in table.column_names})
            if art.input_schema.get("derive"):
                table = derive_columns(table, art.input_schema["derive"])
            X = self.pipeline.apply(table)
        raw = art.learner.booster_.predict(X, pred_contrib=True)
        # sparse input, sparse contributions (one matrix a class)
        if isinstance(raw, list):
            raw = np.hstack([m.toarray() for m in raw])
        raw = raw.toarray() if sp.issparse(raw) else np.asarray(raw)
        width = self.width + 1
        classes = art.manifest.get("classes") or []
        for i, pred in enumerate(preds):
            k = 0
            if raw.shape[1] > width:  # several classes: the decided one's
                k = [str(c) for c in classes].index(str(pred["label"]))
            contrib = raw[i, k * width:(k + 1) * width]
            by_col: dict[str, float] = {}
            for b in self.blocks:
                share = float(contrib[b.start:b.stop].sum()) / len(b.inputs)
                for col in b.inputs:
                    by_col[col] = by_col.get(col, 0.0) + share
            ranked = sorted(by_col.items(), key=lambda kv: -abs(kv[1]))[:top]
            base = float(contrib[-1]) + float(getattr(art.learner, "init_score_", 0.0)
                                              if art.learner.focal else 0.0)
            pred["explanation"] = {
                "space": "value" if art.task == "regression" else "log-odds",
                "base": round(base, 6),
                "columns": [{"column": c, "contribution": round(v, 6)}
                            for c, v in ranked]}

    def score_table(self, rows: list[dict[str, Any]], many: bool,
                    weights: str | None) -> tuple[list[dict[str, Any]], dict]:
        """The batch path (see the module): predictions and the extra keys of
        the response (several objectives' weights)."""
        artifact = self.artifact
        table = rows_to_arrow(rows, artifact.input_schema)
        if table.num_rows:
            # the spec's rules (ranges, allowed values, patterns, checks), by
            # the validator `mlsd predict` uses; its typed values are scored,
            # so a null token ("NA", "") is missing here as in training
            typed, reasons = self.validator.typed(table.to_batches()[0])
            table = pa.table({c: typed[c] for c in table.column_names})
            failed = [{"loc": ("body", *((int(i),) if many else ()),
                               *((c,) if c else ())),
                       "type": rule, "msg": msg}
                      for i, found in sorted(reasons.items()) for c, rule, msg in found]
            if failed:
                raise RequestValidationError(failed)
            if self.windows:
                table = self.with_windows(table)
        chosen = None
        if weights is not None:
            if artifact.objectives is None:
                raise RequestValidationError([{
                    "loc": ("query", "weights"), "type": "value_error",
                    "msg": "this model has one objective: no weights to set"}])
            from ..models._objectives import parse_weights

            try:
                chosen = parse_weights(weights, artifact.objectives.names)
            except ModelError as err:
                raise RequestValidationError([{
                    "loc": ("query", "weights"), "type": "value_error",
                    "msg": str(err)}]) from None
        try:
            out = artifact.score(table, chosen)
        except ModelError as err:  # a joint model's weights are fixed
            raise RequestValidationError([{
                "loc": ("query", "weights"), "type": "value_error",
                "msg": str(err)}]) from None
        extra: dict[str, Any] = {}
        if artifact.objectives is not None:
            extra["weights"] = chosen or artifact.objectives.weights
            extra["combine"] = artifact.objectives.mode
        return artifact.decide(out), extra


def _labels_of(pred: dict[str, Any]) -> list[str]:
    """A prediction's labels for the metrics (regression: 'value'; a label
    set counts each of its labels, so the series stay one a label)."""
    if "labels" in pred:
        return [str(x) for x in pred["labels"]] or ["(none)"]
    if "label" in pred:
        return [str(pred["label"])]
    return ["value"]


class Feedback(BaseModel):
    """One feedback event: what a user did after a prediction (a click, a
    purchase), by the prediction's request id."""

    model_config = ConfigDict(extra="forbid")
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    event: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    at: datetime | None = Field(default=None, description="When it happened "
                                "(default: when the service received it).")


def create_app(model_dir: str | Path, settings: ServeSpec | None = None, *,
               trust_unregistered: bool = False, log: ServiceLog | None = None,
               resolve: Callable[[], Path] | None = None,
               api_key: str | None = None, host: str = "127.0.0.1") -> FastAPI:
    """Build the app serving the artifact in ``model_dir``.

    Endpoints: ``POST /predict`` (one row or a list), ``POST /feedback``
    (events by request id), ``GET /health`` (alive), ``GET /ready`` (model
    loaded), ``GET /model`` (version, metrics, lineage), ``GET /metrics``
    (Prometheus). ``settings`` (the spec's ``serve:``) limit the body size,
    the text fields' length and the requests scored at once; ``log``: where
    predictions and feedback are logged (none without it); ``resolve``: the
    model folder to serve now (an alias's), checked every
    ``settings.reload_seconds`` and loaded in place of the served one when it
    changes; ``api_key``: every endpoint but /health and /ready wants it
    (``X-API-Key`` or ``Authorization: Bearer``), compared in constant time;
    ``settings.grpc_port``: the same predict over gRPC too (``._grpc``), on
    ``host``.
    """
    from ._log import LogWriter, log_row
    from ._metrics import Metrics

    settings = settings or ServeSpec()
    model_dir = Path(model_dir)
    # the artifact is read once here, so the request model can name its fields
    first = Served(ModelArtifact.load(model_dir, trust_unregistered=trust_unregistered),
                   settings)
    # scoring runs on at most this many worker threads; /health and /ready run
    # on the event loop and never queue behind them
    threads = settings.threads or usable_cores()
    scoring = anyio.CapacityLimiter(threads)
    state: dict[str, Any] = {"ready": False, "served": first, "folder": model_dir,
                             "writers": {}, "swap_error": None}
    metrics = Metrics()
    key = api_key.encode() if api_key else None

    def start_writers() -> None:
        if log is None:
            return
        from ..trainingdata.labeling._natural import FEEDBACK_SCHEMA, LOG_SCHEMA

        lake = log.lake()
        common = {"batch_rows": log.batch_rows, "flush_seconds": log.flush_seconds}
        state["writers"] = {
            "predictions": LogWriter(lake, "predictions", log.name, LOG_SCHEMA,
                                     retention_days=log.retention_days,
                                     time_column="predicted_at",
                                     json_columns=("inputs", "outputs"),
                                     **common).start(),
            "feedback": LogWriter(lake, "feedback", log.name, FEEDBACK_SCHEMA,
                                  **common).start()}

    def _load(folder: Path) -> Served:
        return Served(ModelArtifact.load(folder,
                                         trust_unregistered=trust_unregistered),
                      settings)

    async def watch() -> None:
        """Load the model ``resolve`` names when it changes, then swap."""
        while True:
            await asyncio.sleep(settings.reload_seconds)
            try:
                folder = await anyio.to_thread.run_sync(resolve)
                if Path(folder) == state["folder"]:
                    continue
                fresh = await anyio.to_thread.run_sync(_load, folder)
                await anyio.to_thread.run_sync(_warm, fresh)
                state["served"], state["folder"] = fresh, Path(folder)
                state["swap_error"] = None
                metrics.swaps.inc()
            except Exception as err:  # noqa: BLE001 - keep serving the old one
                state["swap_error"] = f"{type(err).__name__}: {err}"[:300]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # every worker thread of the app (scoring, the docs) counts against
        # `threads`: a burst of clients queues instead of growing threads
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        # warm up: the first real request should not pay for lazy imports
        _warm(first)
        # the model, the libraries and the app are long-lived: moved out of the
        # collector's sight, a full collection no longer walks them mid-request
        import gc

        gc.collect()
        gc.freeze()
        start_writers()
        task = (asyncio.create_task(watch()) if resolve is not None
                and settings.reload_seconds > 0 else None)
        grpc_server = None
        if settings.grpc_port is not None:
            from ._grpc import start_grpc

            grpc_server, state["grpc_port"] = start_grpc(
                settings.grpc_port, app_state=app.state.mlsd, threads=threads,
                host=host)
        state["ready"] = True
        yield
        state["ready"] = False
        if task is not None:
            task.cancel()
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait()
        for w in state["writers"].values():
            await anyio.to_thread.run_sync(w.close)

    # /docs and /redoc load their scripts from this service, not from a CDN:
    # a service on a closed network still shows its documentation
    app = FastAPIOffline(
        title=f"mlsd model {first.version}", version=first.version,
        lifespan=lifespan,
        description=f"{first.artifact.task} model on "
        f"{first.artifact.manifest['target']!r}, trained by mlsd. `POST /predict` "
        f"accepts and ignores the fields {', '.join(f'`{c}`' for c in first.ignored)}, "
        f"so a row copied from the training data can be sent as it is.")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # pragma: no cover
        return JSONResponse(status_code=500, content={
            "detail": f"internal error: {type(exc).__name__}",
            "model_version": state["served"].version})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": state["served"].version,
                "worker": os.getpid()}

    @app.get("/ready")
    async def ready():
        version = state["served"].version
        if not state["ready"]:
            return JSONResponse(status_code=503, content={
                "ready": False, "model_version": version})
        return {"ready": True, "model_version": version}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        served = state["served"]
        m = served.artifact.manifest
        return {"model_version": served.version, "model_id": served.version,
                "kind": m["kind"], "task": m["task"], "target": m["target"],
                "classes": m["classes"], "threshold": m["threshold"],
                "metrics": m["metrics"], "lineage": m["lineage"],
                "input_schema": served.artifact.input_schema,
                "created_at": m["created_at"], "fast_path": served.fast,
                "log": {k: w.stats() for k, w in state["writers"].items()},
                "swap_error": state["swap_error"]}

    @app.get("/metrics")
    async def prometheus() -> Response:
        writers = state["writers"].values()
        metrics.log_pending.set(sum(len(w.pending) for w in writers))
        body, kind = metrics.render(_last_verdict(log, state["served"].version))
        return Response(content=body, media_type=kind)

    row_schema = first.Row.model_json_schema(
        ref_template="#/components/schemas/{model}")
    for col in first.ignored:
        row_schema["properties"].setdefault(col, {
            "description": "accepted and ignored (the label, or mlsd's "
                           "provenance of a stored row)"})
    body_schema = {"oneOf": [row_schema, {"type": "array", "items": row_schema,
                                          "maxItems": MAX_ROWS}]}

    def record(served: Served, rows: list[dict[str, Any]],
               preds: list[dict[str, Any]], now: datetime) -> None:
        """The predictions' metrics and log rows (each prediction carries its
        request id already)."""
        writer = state["writers"].get("predictions")
        item_key = log.item_key if log is not None else None
        logged = []
        for row, pred in zip(rows, preds, strict=True):
            for label in _labels_of(pred):
                metrics.predictions.labels(served.version, label).inc()
            if writer is not None:
                item = row.get(item_key) if item_key else None
                logged.append(log_row(pred["request_id"],
                                      None if item is None else str(item),
                                      served.version, row,
                                      {k: v for k, v in pred.items()
                                       if k != "request_id"}, now))
        if logged:
            writer.add(logged)

    def score(served: Served, rows: list[dict[str, Any]], many: bool,
              weights: str | None, rid: str, explain: bool = False,
              later: Callable[..., Any] | None = None) -> dict[str, Any]:
        """The response's document. ``later``: how the bookkeeping (metrics,
        log rows) is put off until after the answer (the event loop's
        ``call_soon``: it then runs after the requests already waiting, off
        a burst's critical path); without it, done here."""
        extra: dict[str, Any] = {}
        try:
            if served.fast_path(len(rows), weights):
                preds = served.score_fast(rows, many)
            else:
                preds, extra = served.score_table(rows, many, weights)
            if explain:
                served.explain(rows, preds)
        except RequestValidationError as exc:
            for e in exc.errors():
                metrics.refused.labels(str(e.get("type", "invalid"))).inc()
            raise
        now = datetime.now(UTC)
        for i, pred in enumerate(preds):
            pred["request_id"] = f"{rid}.{i}" if many else rid
        if later is None:
            record(served, rows, preds, now)
        else:
            later(record, served, rows, preds, now)
        return {"model_version": served.version, "request_id": rid,
                "predictions": preds, **extra}

    # the query parameter is read by hand and documented here: FastAPI's
    # dependency solving cost a fifth of a one-row request
    @app.post("/predict", openapi_extra={
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": body_schema}}},
        "parameters": [{"name": "weights", "in": "query", "required": False,
                        "schema": {"type": "string"}, "description":
                        "Several objectives: their weights in the combined score "
                        "for this request, as quality:0.5,engagement:0.5 "
                        "(decoupled models only; normalised to sum to 1)."},
                       {"name": "explain", "in": "query", "required": False,
                        "schema": {"type": "boolean"}, "description":
                        "Add each row's five source columns that moved its score "
                        "most (exact TreeSHAP; LightGBM models)."}]})
    async def predict(request: Request) -> Any:
        # reached only when the edge does not answer (it answers POST /predict
        # itself): the same handler
        status, payload = await handle_predict(request.scope, request.receive,
                                               request.state.request_id)
        return Response(payload, status_code=status, media_type="application/json")

    async def handle_predict(scope, receive, rid: str) -> tuple[int, bytes]:
        """POST /predict from the ASGI scope and channel: the status and the
        JSON body (the edge calls it directly, before FastAPI's routing)."""
        query_string = scope.get("query_string", b"")
        query = parse_qs(query_string.decode("latin-1")) if query_string else {}
        weights = query.get("weights", [None])[-1]
        explain = query.get("explain", [""])[-1].lower() in ("1", "true", "yes")
        served = state["served"]  # one model for the whole request
        try:
            raw = await asgi_body(scope, receive, settings.max_body_bytes)
            rows = None
            if raw[:1] == b"{":  # one row, typed straight from its text
                try:
                    rows, many = [served.row_from_json(raw)], False
                except ValidationError:
                    pass  # the way below says what is wrong, and where
            if rows is None:
                rows, many = served.validate(parse_json(raw))
            if served.fast_path(len(rows), weights) and len(rows) <= INLINE_ROWS \
                    and not explain:
                doc = score(served, rows, many, weights, rid,  # no thread hop
                            later=asyncio.get_running_loop().call_soon)
            else:
                doc = await anyio.to_thread.run_sync(
                    score, served, rows, many, weights, rid, explain,
                    limiter=scoring)
        except _Refused as r:
            return r.status, _dumps({"detail": [{"loc": list(r.loc), "msg": r.msg,
                                                 "type": r.kind}],
                                     "model_version": served.version})
        except RequestValidationError as exc:
            return 422, _dumps({"detail": _errors(list(exc.errors())),
                                "model_version": served.version})
        return 200, _dumps(doc)

    feedback_one, feedback_many = TypeAdapter(Feedback), TypeAdapter(list[Feedback])

    @app.post("/feedback", status_code=202, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {"oneOf": [
            Feedback.model_json_schema(), {"type": "array", "maxItems": MAX_ROWS,
                                           "items": Feedback.model_json_schema()}]}}}}})
    async def feedback(request: Request) -> Any:
        try:
            body = await read_json(request, settings.max_body_bytes)
        except _Refused as r:
            return JSONResponse(status_code=r.status, content={
                "detail": [{"loc": list(r.loc), "msg": r.msg, "type": r.kind}],
                "model_version": state["served"].version})
        try:
            if isinstance(body, list):
                if len(body) > MAX_ROWS:
                    raise RequestValidationError([{
                        "loc": ("body",), "type": "too_long", "input": len(body),
                        "msg": f"at most {MAX_ROWS} events per request"}])
                events = feedback_many.validate_python(body)
            else:
                events = [feedback_one.validate_python(body)]
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(
                    include_url=False)]) from None
        now = datetime.now(UTC)
        if not store_feedback([{"request_id": e.request_id, "event": e.event,
                                "at": now if e.at is None else (
                                    e.at.replace(tzinfo=UTC) if e.at.tzinfo is None
                                    else e.at.astimezone(UTC))} for e in events]):
            return JSONResponse(status_code=503, content={
                "detail": "this service keeps no log (started without a project): "
                          "feedback cannot be stored", "accepted": 0})
        return {"accepted": len(events), "request_id": request.state.request_id}

    def store_feedback(events: list[dict[str, Any]]) -> bool:
        """Queue feedback events for the log (False: no log to keep them)."""
        writer = state["writers"].get("feedback")
        if writer is None:
            return False
        writer.add(events)
        for e in events:
            metrics.feedback.labels(e["event"]).inc()
        return True

    # FastAPI's 422 for validation errors, plus the model version
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={
            "detail": _errors(list(exc.errors())),
            "model_version": state["served"].version})

    # what the gRPC face shares with REST: the model, the scoring, the log
    app.state.mlsd = {"state": state, "score": score, "feedback": store_feedback,
                      "key": key}
    # fastapi_offline builds a plain FastAPI; its class becomes the one that
    # puts the edge outside (same instance layout: only __call__ differs)
    app.__class__ = _Outer
    app.edge = _Edge(partial(FastAPI.__call__, app), state=state,
                     metrics=metrics, key=key, predict=handle_predict)
    return app


def _last_verdict(log: ServiceLog | None, version: str) -> dict[str, Any] | None:
    """The last `mlsd monitor` verdict on the served model, if one was kept
    (``.mlsd/monitor/MODEL.json``)."""
    if log is None:
        return None
    path = Path(log.lake_root) / "monitor" / f"{version}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _dumps(doc: dict[str, Any]) -> bytes:
    """A JSON body of plain values (FastAPI's encoder walks every value again
    for types it might not know; these are JSON's own), by pydantic-core's
    encoder (a seventh of ``json.dumps``'s time); a NaN or an infinity, which
    JSON has not, fails as ``json.dumps(allow_nan=False)`` does."""
    out = to_json(doc, fallback=str)
    if b"NaN" in out or b"Infinity" in out:  # or a text holding those words
        return json.dumps(doc, separators=(",", ":"), allow_nan=False,
                          default=str).encode()
    return out


def _warm(served: Served) -> None:
    """Score an empty row on both paths: lazy imports and caches are paid
    before the first request."""
    artifact = served.artifact
    artifact.score(rows_to_arrow([{}], artifact.input_schema))
    if served.fast:
        try:
            served.score_fast([{}], False)
        except RequestValidationError:
            pass  # required fields: the features' one-row path is built anyway


class _Outer(FastAPI):
    """The app with the edge (below) outside it: a request meets the edge
    first, and POST /predict never enters FastAPI's own middleware (telemetry,
    error and body-limit layers: two fifths of a one-row request's time in the
    server, by py-spy at 100 requests/s)."""

    edge: "_Edge | None" = None

    async def __call__(self, scope, receive, send):
        if self.edge is None:
            return await super().__call__(scope, receive, send)
        return await self.edge(scope, receive, send)


class _Edge:
    """Pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs a task
    and a queue per request): the request id, the API key, the model version
    header, and the request metrics."""

    def __init__(self, app, *, state: dict[str, Any], metrics, key: bytes | None,
                 predict=None):
        self.app, self.state, self.metrics, self.key = app, state, metrics, key
        self.predict = predict  # POST /predict, answered here (see create_app)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = dict(scope.get("headers") or ())
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if REQUEST_ID.match(given) else _new_id()
        scope.setdefault("state", {})["request_id"] = rid
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        version = self.state["served"].version
        status = {"code": 500}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-request-id", rid.encode()),
                                      (b"x-model-version", version.encode())]
            await send(message)

        try:
            if self.key is not None and path not in OPEN_PATHS and \
                    not _key_ok(headers, self.key):
                body = json.dumps({"detail": "an API key is required: send it as "
                                   "X-API-Key or Authorization: Bearer",
                                   "model_version": version}).encode()
                await sending({"type": "http.response.start", "status": 401,
                               "headers": [(b"content-type", b"application/json"),
                                           (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
            if self.predict is not None and path == "/predict" and \
                    scope.get("method") == "POST":
                # the hot path skips the framework's routing, dependency and
                # exception layers (a fifth of a one-row request); same answers
                try:
                    code, payload = await self.predict(scope, receive, rid)
                except Exception as err:  # noqa: BLE001 - a 500, as FastAPI's
                    code, payload = 500, _dumps({
                        "detail": f"internal error: {type(err).__name__}",
                        "model_version": version})
                await sending({"type": "http.response.start", "status": code,
                               "headers": [(b"content-type", b"application/json"),
                                           (b"content-length",
                                            str(len(payload)).encode())]})
                await send({"type": "http.response.body", "body": payload})
                return
            await self.app(scope, receive, sending)
        finally:
            # counted after the requests already waiting are answered
            asyncio.get_running_loop().call_soon(
                self._count, endpoint, status["code"], time.perf_counter() - started)

    def _count(self, endpoint: str, code: int, seconds: float) -> None:
        self.metrics.requests.labels(endpoint, str(code)).inc()
        self.metrics.latency.labels(endpoint).observe(seconds)


_ID_PREFIX: dict[int, str] = {}  # pid -> its prefix (a forked child draws anew)
_ID_COUNTER = itertools.count()


def _new_id() -> str:
    """A request id unique across workers and restarts: the pid and 64 random
    bits drawn once per process, then a counter (uuid4 reads the OS's random
    source on every call, a sixth of a fast request's time)."""
    pid = os.getpid()
    prefix = _ID_PREFIX.get(pid)
    if prefix is None:
        prefix = _ID_PREFIX[pid] = f"{pid:08x}"[-8:] + uuid.uuid4().hex[:16]
    return f"{prefix}{next(_ID_COUNTER):08x}"


def _key_ok(headers: dict[bytes, bytes], key: bytes) -> bool:
    """Whether the request carries the API key (constant-time comparison)."""
    given = headers.get(b"x-api-key")
    if given is None:
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
    return given is not None and hmac.compare_digest(given, key)


def api_key_from_env(name: str = "MLSD_API_KEY") -> str | None:
    """The API key the service wants, from the environment (never a file)."""
    value = os.environ.get(name, "")
    return value or None


WORKER_ENV = "MLSD_SERVE_WORKER"  # what `mlsd serve --workers N` passes each worker


def project_log(project, settings: ServeSpec) -> ServiceLog | None:
    """Where a project's service logs (None: serve.log is off)."""
    if not settings.log:
        return None
    key = project.spec.key if isinstance(project.spec.key, str) else None
    return ServiceLog(lake_root=project.home, lake_url=project.spec.lake.url,
                      name=project.spec.name, item_key=key,
                      flush_seconds=settings.log_flush_seconds,
                      batch_rows=settings.log_batch_rows,
                      retention_days=settings.log_retention_days)


def project_app(project, model: str | None = None,
                settings: ServeSpec | None = None, *,
                trust_unregistered: bool = False,
                host: str = "127.0.0.1") -> FastAPI:
    """The app `mlsd serve` runs in a project: the model ``model`` names (an
    alias, an id; default: serve.model, else the champion, else the latest),
    its predictions and feedback logged in the project's lake (serve.log),
    and the model swapped when the alias moves (serve.reload_seconds)."""
    settings = settings or project.spec.serve
    folder, _ = project.which_model(model)
    fixed = model is not None and Path(model).expanduser().is_dir()
    log = project_log(project, settings)
    return create_app(folder, settings, trust_unregistered=trust_unregistered,
                      log=log, api_key=api_key_from_env(settings.api_key_env),
                      host=host,
                      resolve=None if fixed else (
                          lambda: project.which_model(model)[0]))


def app_from_env() -> FastAPI:
    """A worker's app (``uvicorn --factory``): the project, model and
    settings `mlsd serve` put in ``MLSD_SERVE_WORKER``."""
    from ..runtime import Project

    conf = json.loads(os.environ[WORKER_ENV])
    proj = Project(spec_path=Path(conf["config"]), overrides=conf.get("set"))
    settings = type(proj.spec.serve).model_validate(
        {**proj.spec.serve.model_dump(), **(conf.get("overrides") or {})})
    return project_app(proj, conf.get("model"), settings,
                       trust_unregistered=bool(conf.get("trust")),
                       host=conf.get("host", "127.0.0.1"))
