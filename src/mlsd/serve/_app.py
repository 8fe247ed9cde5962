"""The REST service of one model artifact (FastAPI).

The request model is generated from the artifact's input schema, so ``/docs``
shows the real field names and types and a wrong or missing field gets FastAPI's
422 with the field's location. Validated rows become a typed Arrow table and go
through the artifact's own feature ``apply`` and model: the very path batch
scoring takes.
"""


import json
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
import pyarrow as pa
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
)

from .._threads import usable_cores
from ..errors import ModelError
from ..etl import PROVENANCE, arrow_type
from ..formats import exported_name
from ..models import ModelArtifact
from ..models._artifact import row_validator
from ..spec import ServeSpec

MAX_ROWS = 10_000
INT64 = (-(2**63), 2**63 - 1)
ECHO_CHARS = 80  # a 422 shows at most this much of a rejected value


def _valid_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (a lone surrogate)") from None
    return value


def _py_types(max_string_chars: int) -> dict[str, Any]:
    """The request type of each logical type: numbers are numbers (``"7"`` is
    not one), integers fit int64, floats are finite, text is valid Unicode
    and at most ``max_string_chars`` long."""
    return {
        "string": Annotated[str, StringConstraints(max_length=max_string_chars),
                            AfterValidator(_valid_text)],
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
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, ("body",), f"the body is {int(declared):,} bytes; at "
                       f"most {limit:,} are accepted", "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, ("body",), f"the body is over {limit:,} bytes, "
                           f"the most accepted", "too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
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
        arrays.append(pa.array(values, type=arrow_type(typ)))
        names.append(col)
    return pa.Table.from_arrays(arrays, names=names)


def _without(row: Any, fields: tuple[str, ...]) -> Any:
    if not isinstance(row, dict):
        return row  # validation says what is wrong with it
    return {k: v for k, v in row.items() if k not in fields}


def create_app(model_dir: str | Path, settings: ServeSpec | None = None, *,
               trust_unregistered: bool = False) -> FastAPI:
    """Build the app serving the artifact in ``model_dir``.

    Endpoints: ``POST /predict`` (one row or a list), ``GET /health`` (alive),
    ``GET /ready`` (model loaded), ``GET /model`` (version, metrics, lineage).
    ``settings`` (the spec's ``serve:``) limit the body size, the text fields'
    length and the requests scored at once.
    """
    settings = settings or ServeSpec()
    model_dir = Path(model_dir)
    # The artifact is read once here, so the request model can name its fields.
    artifact = ModelArtifact.load(model_dir, trust_unregistered=trust_unregistered)
    version = artifact.model_id
    Row = request_model(artifact.input_schema,
                        max_string_chars=settings.max_string_chars)
    # scoring runs on at most this many worker threads; /health and /ready run
    # on the event loop and never queue behind them
    threads = settings.threads or usable_cores()
    scoring = anyio.CapacityLimiter(threads)
    state: dict[str, Any] = {"ready": False}
    # a row copied from the training data carries the label and mlsd's
    # provenance: accepted and dropped before validation; other unknown fields
    # still get a 422
    ignored = tuple(dict.fromkeys([artifact.manifest["target"],
                                   *artifact.input_schema.get("targets", []),
                                   *PROVENANCE,
                                   *map(exported_name, PROVENANCE)]))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # every worker thread of the app (scoring, the docs) counts against
        # `threads`: a burst of clients queues instead of growing threads
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        # warm up: the first real request should not pay for lazy imports
        artifact.score(rows_to_arrow([{}], artifact.input_schema))
        state["ready"] = True
        yield
        state["ready"] = False

    # /docs and /redoc load their scripts from this service, not from a CDN:
    # a service on a closed network still shows its documentation
    app = FastAPIOffline(
        title=f"mlsd model {version}", version=version, lifespan=lifespan,
        description=f"{artifact.task} model on {artifact.manifest['target']!r}, "
        f"trained by mlsd. `POST /predict` accepts and ignores the fields "
        f"{', '.join(f'`{c}`' for c in ignored)}, so a row copied from the "
        f"training data can be sent as it is.")

    @app.middleware("http")
    async def add_version(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Model-Version"] = version
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # pragma: no cover
        return JSONResponse(status_code=500, content={
            "detail": f"internal error: {type(exc).__name__}",
            "model_version": version})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": version}

    @app.get("/ready")
    async def ready():
        if not state["ready"]:
            return JSONResponse(status_code=503, content={
                "ready": False, "model_version": version})
        return {"ready": True, "model_version": version}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        m = artifact.manifest
        return {"model_version": version, "model_id": version, "kind": m["kind"],
                "task": m["task"], "target": m["target"], "classes": m["classes"],
                "threshold": m["threshold"], "metrics": m["metrics"],
                "lineage": m["lineage"], "input_schema": artifact.input_schema,
                "created_at": m["created_at"]}

    one, many = TypeAdapter(Row), TypeAdapter(list[Row])
    validator = row_validator(artifact.input_schema)
    row_schema = Row.model_json_schema(ref_template="#/components/schemas/{model}")
    for col in ignored:
        row_schema["properties"].setdefault(col, {
            "description": "accepted and ignored (the label, or mlsd's "
                           "provenance of a stored row)"})
    body_schema = {"oneOf": [row_schema, {"type": "array", "items": row_schema,
                                          "maxItems": MAX_ROWS}]}

    def score(body: Any, weights: str | None = None) -> dict[str, Any]:
        # Validated here rather than by a Union annotation, so that errors name
        # the row and the field once ("body", 3, "likes"), not once per branch.
        if isinstance(body, list):
            body = [_without(r, ignored) for r in body]
        else:
            body = _without(body, ignored)
        many_rows = isinstance(body, list)
        try:
            if isinstance(body, list):
                if len(body) > MAX_ROWS:
                    raise RequestValidationError([{
                        "loc": ("body",), "type": "too_long", "input": len(body),
                        "msg": f"at most {MAX_ROWS} rows per request, got "
                               f"{len(body)}"}])
                rows = many.validate_python(body)
            else:
                rows = [one.validate_python(body)]
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(
                    include_url=False)]) from None
        table = rows_to_arrow([r.model_dump() for r in rows], artifact.input_schema)
        if table.num_rows:
            # the spec's rules (ranges, allowed values, patterns, checks), by
            # the validator `mlsd predict` uses
            _, reasons = validator.typed(table.to_batches()[0])
            failed = [{"loc": ("body", *((int(i),) if many_rows else ()),
                               *((c,) if c else ())),
                       "type": rule, "msg": msg}
                      for i, found in sorted(reasons.items()) for c, rule, msg in found]
            if failed:
                raise RequestValidationError(failed)
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
        doc = {"model_version": version, "predictions": artifact.decide(out)}
        if artifact.objectives is not None:
            doc["weights"] = chosen or artifact.objectives.weights
            doc["combine"] = artifact.objectives.mode
        return doc

    @app.post("/predict", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": body_schema}}}})
    async def predict(request: Request, weights: str | None = Query(
            default=None, description="Several objectives: their weights in the "
            "combined score for this request, as quality:0.5,engagement:0.5 "
            "(decoupled models only; normalised to sum to 1).")) -> Any:
        try:
            body = await read_json(request, settings.max_body_bytes)
        except _Refused as r:
            return JSONResponse(status_code=r.status, content={
                "detail": [{"loc": list(r.loc), "msg": r.msg, "type": r.kind}],
                "model_version": version})
        return await anyio.to_thread.run_sync(score, body, weights,
                                              limiter=scoring)

    # FastAPI's 422 for validation errors, plus the model version
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={
            "detail": _errors(list(exc.errors())), "model_version": version})

    return app
