"""The same predict over gRPC: a ``.proto`` made from the model's input schema.

``model_proto(input_schema)`` writes the service definition (`mlsd models
proto ID` prints it for clients): a ``Row`` message with one field a column
(``optional``, so an absent field is missing, not zero; timestamps as
``google.protobuf.Timestamp``), ``Predict(PredictRequest) returns
(PredictResponse)`` and ``Feedback``. At start the service compiles it with
grpc_tools' protoc into a private folder and serves it next to REST, in the
same process: a request is turned into the same row dictionaries the REST
request model gives, validated by the same model and rules, scored by the
same path, logged to the same prediction log. A row the rules refuse is
``INVALID_ARGUMENT`` with the REST 422's details as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_COMPILED: dict[str, tuple[Any, Any]] = {}  # .proto text -> (pb2, pb2_grpc)
PROTO_TYPES = {"string": "string", "int64": "int64", "float64": "double",
               "bool": "bool", "timestamp": "google.protobuf.Timestamp"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def field_names(input_schema: dict[str, Any]) -> dict[str, str]:
    """Each column's proto field name (a column that is no identifier, or a
    proto keyword clash, becomes ``c_N``; the mapping is in the comments)."""
    out = {}
    for i, col in enumerate(input_schema["columns"]):
        out[col] = col if _NAME.match(col) else f"c_{i}"
    return out


def package_of(model_id: str) -> str:
    """The proto package of a model's service (its messages' full names are
    the model's own, so two models' can live in one process)."""
    return "mlsd.model_" + re.sub(r"[^A-Za-z0-9_]", "_", model_id)


def model_proto(input_schema: dict[str, Any], model_id: str) -> str:
    """The ``.proto`` of a model's service."""
    names = field_names(input_schema)
    lines = ["// mlsd model " + model_id + ": the same predict as POST /predict.",
             'syntax = "proto3";', "", f"package {package_of(model_id)};", "",
             'import "google/protobuf/timestamp.proto";', "",
             "// One input row: a field a column of the model's input schema; leave "
             "a field out for a missing value.", "message Row {"]
    for n, (col, typ) in enumerate(input_schema["columns"].items(), start=1):
        if isinstance(typ, dict):
            lines.append(f"  // {col}: a nested column, sent as JSON text")
            lines.append(f"  optional string {names[col]} = {n};")
            continue
        note = "" if names[col] == col else f"  // column {json.dumps(col)}"
        lines.append(f"  optional {PROTO_TYPES[typ]} {names[col]} = {n};{note}")
    lines += ["}", "",
              "message PredictRequest {", "  repeated Row rows = 1;",
              "  // optional: a sane id of yours (64 of A-Z a-z 0-9 . _ : -)",
              "  string request_id = 2;", "  // several objectives: quality:0.5,"
              "engagement:0.5", "  string weights = 3;", "}", "",
              "message Prediction {", "  string request_id = 1;",
              "  optional double score = 2;     // binary, several objectives",
              "  optional string label = 3;     // binary, multiclass",
              "  map<string, double> scores = 4;  // multiclass, label sets, "
              "objectives",
              "  repeated string labels = 5;    // label sets",
              "  optional double value = 6;     // regression",
              "  optional double lower = 7;", "  optional double upper = 8;", "}", "",
              "message PredictResponse {", "  string model_version = 1;",
              "  string request_id = 2;", "  repeated Prediction predictions = 3;",
              "}", "",
              "message FeedbackEvent {", "  string request_id = 1;",
              "  string event = 2;", "  google.protobuf.Timestamp at = 3;", "}", "",
              "message FeedbackRequest { repeated FeedbackEvent events = 1; }",
              "message FeedbackResponse { int64 accepted = 1; }", "",
              "service Model {",
              "  rpc Predict(PredictRequest) returns (PredictResponse);",
              "  rpc Feedback(FeedbackRequest) returns (FeedbackResponse);", "}", ""]
    return "\n".join(lines)


def compile_proto(text: str, folder: Path | None = None):
    """Compile a ``.proto`` with grpc_tools' protoc and import the messages
    and the service stubs: ``(pb2, pb2_grpc)`` (once a text in a process:
    protobuf keeps one definition of each message name)."""
    if text in _COMPILED:
        return _COMPILED[text]
    import grpc_tools
    from grpc_tools import protoc

    match = re.search(r"^package ([\w.]+);", text, re.M)
    stem = (match.group(1) if match else "model").replace(".", "_")
    folder = Path(folder or tempfile.mkdtemp(prefix="mlsd-grpc-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.proto").write_text(text, encoding="utf-8")
    includes = str(Path(grpc_tools.__file__).parent / "_proto")
    code = protoc.main(["protoc", f"-I{folder}", f"-I{includes}",
                        f"--python_out={folder}", f"--grpc_python_out={folder}",
                        str(folder / f"{stem}.proto")])
    if code != 0:
        raise RuntimeError(f"protoc failed on the model's .proto ({code})")
    mods = []
    for name in (f"{stem}_pb2", f"{stem}_pb2_grpc"):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # the stubs import the messages by this name
        spec.loader.exec_module(mod)
        mods.append(mod)
    _COMPILED[text] = (mods[0], mods[1])
    return _COMPILED[text]


def _rows(request, input_schema: dict[str, Any], names: dict[str, str]
          ) -> list[dict[str, Any]]:
    out = []
    for msg in request.rows:
        row: dict[str, Any] = {}
        for col, typ in input_schema["columns"].items():
            f = names[col]
            if not msg.HasField(f):
                continue
            v = getattr(msg, f)
            if typ == "timestamp":
                v = v.ToDatetime(tzinfo=UTC)
            elif isinstance(typ, dict):
                v = json.loads(v)
            row[col] = v
        out.append(row)
    return out


def _prediction(pb2, p: dict[str, Any]):
    m = pb2.Prediction(request_id=p.get("request_id", ""))
    for k in ("score", "value", "lower", "upper"):
        if p.get(k) is not None:
            setattr(m, k, float(p[k]))
    if p.get("label") is not None:
        m.label = str(p["label"])
    for k, v in (p.get("scores") or p.get("objectives") or {}).items():
        m.scores[str(k)] = float(v)
    m.labels.extend(str(x) for x in p.get("labels") or [])
    return m


def start_grpc(port: int, *, app_state: dict[str, Any], threads: int,
               host: str = "127.0.0.1"):
    """Serve the app's model over gRPC on ``port`` (0: any free one); the
    server and the port it listens on."""
    from concurrent import futures

    import grpc
    from fastapi.exceptions import RequestValidationError

    from ._app import REQUEST_ID, _errors, _new_id

    state, score, feedback = (app_state["state"], app_state["score"],
                              app_state["feedback"])
    key: bytes | None = app_state.get("key")

    def authorised(context) -> None:
        """The REST service's API key, from the call's metadata (x-api-key,
        or authorization: Bearer), compared in constant time."""
        if key is None:
            return
        from ._app import _key_ok

        meta = {k.lower().encode(): (v if isinstance(v, bytes) else v.encode())
                for k, v in context.invocation_metadata()}
        if not _key_ok(meta, key):
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "an API key is required: send it as x-api-key metadata")
    served = state["served"]
    schema = served.artifact.input_schema
    pb2, pb2_grpc = compile_proto(model_proto(schema, served.version))
    names = field_names(schema)

    class Servicer(pb2_grpc.ModelServicer):
        def Predict(self, request, context):  # noqa: N802 - gRPC's name
            authorised(context)
            current = state["served"]  # one model for the whole request
            if current.artifact.input_schema != schema:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              "the served model's inputs changed: fetch its new "
                              ".proto (mlsd models proto) and reconnect")
            rid = request.request_id if REQUEST_ID.match(request.request_id) \
                else _new_id()
            try:
                rows, _ = current.validate(_rows(request, schema, names))
                doc = score(current, rows, True, request.weights or None, rid)
            except RequestValidationError as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              json.dumps(_errors(list(err.errors()))))
            return pb2.PredictResponse(
                model_version=doc["model_version"], request_id=rid,
                predictions=[_prediction(pb2, p) for p in doc["predictions"]])

        def Feedback(self, request, context):  # noqa: N802
            authorised(context)
            events = [{"request_id": e.request_id, "event": e.event,
                       "at": e.at.ToDatetime(tzinfo=UTC) if e.HasField("at")
                       else datetime.now(UTC)} for e in request.events]
            bad = [i for i, e in enumerate(events)
                   if not e["request_id"] or not e["event"]]
            if bad:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"events {bad[:5]}: a request_id and an event, each")
            if not feedback(events):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              "this service keeps no log: feedback cannot be stored")
            return pb2.FeedbackResponse(accepted=len(events))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    pb2_grpc.add_ModelServicer_to_server(Servicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound
