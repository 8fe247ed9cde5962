"""Property-based requests built from the service's own OpenAPI document
(schemathesis): whatever a client sends that the document allows, or not
quite, no answer is a 5xx. Bounded by the hypothesis profile (CI: 40 cases
an operation, each generation mode). Driven by hand with each operation's
strategy: schemathesis' pytest plugin does not run under pytest 9."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.serve._app import project_app
from tests.serve.conftest import served_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(ran_project, tmp_path_factory):
    project = served_copy(Path(ran_project[0]),
                          tmp_path_factory.mktemp("schema") / "demo")
    serve = project.spec.serve.model_copy(update={"log_flush_seconds": 0.2})
    app = project_app(project, settings=serve)
    with TestClient(app):  # the lifespan: warmed up, ready, the log writers on
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_request_makes_a_server_error(api, mode):
    from schemathesis import GenerationMode

    ops = [r.ok() for r in api.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in ops} >= {
        "POST /predict", "POST /feedback", "GET /metrics", "GET /model"}
    strategy = st.one_of([o.as_strategy(generation_mode=GenerationMode(mode))
                          for o in ops])
    seen: dict[str, int] = {}

    @given(case=strategy)
    @settings(deadline=None, suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call()
        seen[response.status_code // 100] = seen.get(response.status_code // 100,
                                                     0) + 1
        assert response.status_code < 500, (case.method, case.path, case.body,
                                            response.text[:300])
    check()
    assert seen.get(2) or seen.get(4)  # requests reached the endpoints
