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
from typing import Any

import pyarrow as pa
from fastapi import Body, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from ..etl import PROVENANCE, arrow_type
from ..formats import exported_name
from ..models import ModelArtifact

PY_TYPES: dict[str, type] = {"string": str, "int64": int, "float64": float,
                             "bool": bool, "timestamp": datetime}
MAX_ROWS = 10_000


def _py_type(typ: Any, name: str) -> Any:
    """The Python type of a logical type; a struct is a nested model."""
    if isinstance(typ, dict):
        return create_model(name, __config__=ConfigDict(extra="forbid"),
                            **{k: (_py_type(v, f"{name}_{k}") | None, None)
                               for k, v in typ.items()})
    return PY_TYPES[typ]


def request_model(schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model of one input row, from the artifact's input schema."""
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for col, typ in schema["columns"].items():
        py = _py_type(typ, f"InputRow_{col}")
        fields[col] = (py, ...) if col in required else (py | None, None)
    return create_model("InputRow", __config__=ConfigDict(extra="forbid"),
                        **fields)


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


def create_app(model_dir: str | Path) -> FastAPI:
    """Build the app serving the artifact in ``model_dir``.

    Endpoints: ``POST /predict`` (one row or a list), ``GET /health`` (alive),
    ``GET /ready`` (model loaded), ``GET /model`` (version, metrics, lineage).
    """
    model_dir = Path(model_dir)
    # The artifact is read once here, so the request model can name its fields.
    artifact = ModelArtifact.load(model_dir)
    version = artifact.model_id
    Row = request_model(artifact.input_schema)
    state: dict[str, Any] = {"ready": False}
    # a row copied from the training data carries the label and mlsd's
    # provenance: accepted and dropped before validation; other unknown fields
    # still get a 422
    ignored = tuple(dict.fromkeys([artifact.manifest["target"], *PROVENANCE,
                                   *map(exported_name, PROVENANCE)]))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
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
    def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": version}

    @app.get("/ready")
    def ready():
        if not state["ready"]:
            return JSONResponse(status_code=503, content={
                "ready": False, "model_version": version})
        return {"ready": True, "model_version": version}

    @app.get("/model")
    def model() -> dict[str, Any]:
        m = artifact.manifest
        return {"model_version": version, "model_id": version, "kind": m["kind"],
                "task": m["task"], "target": m["target"], "classes": m["classes"],
                "threshold": m["threshold"], "metrics": m["metrics"],
                "lineage": m["lineage"], "input_schema": artifact.input_schema,
                "created_at": m["created_at"]}

    one, many = TypeAdapter(Row), TypeAdapter(list[Row])
    row_schema = Row.model_json_schema(ref_template="#/components/schemas/{model}")
    for col in ignored:
        row_schema["properties"].setdefault(col, {
            "description": "accepted and ignored (the label, or mlsd's "
                           "provenance of a stored row)"})
    body_schema = {"oneOf": [row_schema, {"type": "array", "items": row_schema,
                                          "maxItems": MAX_ROWS}]}

    @app.post("/predict", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": body_schema}}}})
    def predict(body: Any = Body(...)) -> dict[str, Any]:  # noqa: B008
        # Validated here rather than by a Union annotation, so that errors name
        # the row and the field once ("body", 3, "likes"), not once per branch.
        if isinstance(body, list):
            body = [_without(r, ignored) for r in body]
        else:
            body = _without(body, ignored)
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
        out = artifact.score(table)
        return {"model_version": version, "predictions": artifact.decide(out)}

    # FastAPI's 422 for validation errors, plus the model version
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        response = await request_validation_exception_handler(request, exc)
        body = json.loads(bytes(response.body))
        body["model_version"] = version
        return JSONResponse(status_code=422, content=body)

    return app
