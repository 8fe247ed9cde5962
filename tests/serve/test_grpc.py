"""The same predict over gRPC: the .proto made from the input schema, the same
validation, answers and log as REST."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import grpc
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mlsd.serve._app import project_app
from mlsd.serve._grpc import compile_proto, model_proto

pytestmark = pytest.mark.slow


def test_predict_over_grpc_answers_as_rest_and_is_logged(project, tmp_path):
    from mlsd.cli import app as cli

    r = CliRunner().invoke(cli, ["models", "proto", "--config",
                                 str(project.spec_path)])
    assert r.exit_code == 0 and "service Model" in r.output
    assert "optional int64 likes" in r.output
    assert "optional google.protobuf.Timestamp created_at" in r.output
    pb2, pb2_grpc = compile_proto(r.output, tmp_path / "client")  # as a client
    settings = project.spec.serve.model_copy(update={"grpc_port": 0,
                                                     "log_flush_seconds": 0.2})
    app = project_app(project, settings=settings)
    rows = [{"post_id": "g1", "author_id": "u1", "text": "free crypto bonus now",
             "likes": 3, "created_at": "2025-01-02T03:00:00+00:00"},
            {"post_id": "g2", "author_id": "u2", "text": "how do I join two tables",
             "views": 40, "created_at": "2025-01-02T04:00:00+00:00"}]
    with TestClient(app) as c:
        rest = c.post("/predict", json=rows).json()["predictions"]
        port = app.state.mlsd["state"]["grpc_port"]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb2_grpc.ModelStub(channel)
            msgs = []
            for row in rows:
                m = pb2.Row(**{k: v for k, v in row.items() if k != "created_at"})
                m.created_at.FromDatetime(datetime.fromisoformat(row["created_at"])
                                          .astimezone(UTC).replace(tzinfo=None))
                msgs.append(m)
            out = stub.Predict(pb2.PredictRequest(rows=msgs, request_id="grpc-1"))
            assert out.request_id == "grpc-1"
            assert [p.request_id for p in out.predictions] == ["grpc-1.0",
                                                               "grpc-1.1"]
            for p, q in zip(out.predictions, rest, strict=True):
                assert p.score == q["score"] and p.label == str(q["label"])
            # a row the rules refuse: INVALID_ARGUMENT, the 422's details
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(pb2.PredictRequest(rows=[pb2.Row(post_id="g3")]))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            detail = json.loads(err.value.details())
            assert {tuple(d["loc"]) for d in detail} >= {("body", 0, "author_id")}
            fb = stub.Feedback(pb2.FeedbackRequest(events=[pb2.FeedbackEvent(
                request_id="grpc-1.0", event="report_spam")]))
            assert fb.accepted == 1
        time.sleep(0.5)
    log = project.lake.read("predictions", project.spec.name)
    assert set(log.column("request_id").to_pylist()) >= {"grpc-1.0", "grpc-1.1"}
    assert project.lake.read("feedback", project.spec.name).num_rows == 1


def test_the_proto_names_odd_columns_safely():
    text = model_proto({"columns": {"a b": "string", "ok": "float64",
                                    "when": "timestamp"}}, "m1")
    assert 'optional string c_0 = 1;  // column "a b"' in text
    assert "optional double ok = 2;" in text
    pb2, _ = compile_proto(text)
    assert pb2.Row(c_0="x", ok=1.5).ok == 1.5
