"""The service's Prometheus metrics (``GET /metrics``).

Requests and their latency by endpoint and status, predictions by model
version and decided label, rows refused by rule, the prediction log's queue.
With several workers (``mlsd serve --workers``), ``prometheus_client``'s
multiprocess mode sums every worker's values: the CLI sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, each writes its values
there, and whichever worker answers ``/metrics`` reads them all. One process
alone keeps them in its own registry (one per app, so apps built in one
process, as tests do, do not collide).
"""

from __future__ import annotations

import os
from typing import Any

ENDPOINTS = ("/predict", "/feedback", "/health", "/ready", "/model", "/metrics")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
           2.5, 10.0)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The service's counters, histograms and gauges."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        # multiprocess: values live in files, not in a registry
        self.registry = None if multiprocess() else CollectorRegistry()
        reg: dict[str, Any] = {"registry": self.registry}
        self.requests = Counter("mlsd_requests", "HTTP requests answered, by "
                                "endpoint and status code.", ["endpoint", "status"],
                                **reg)
        self.latency = Histogram("mlsd_request_seconds", "Time from request to "
                                 "response, by endpoint.", ["endpoint"],
                                 buckets=BUCKETS, **reg)
        self.predictions = Counter("mlsd_predictions", "Rows predicted, by model "
                                   "version and decided label (regression: "
                                   "'value').", ["model_version", "label"], **reg)
        self.refused = Counter("mlsd_rows_refused", "Rows refused with 422, by the "
                               "rule they broke.", ["rule"], **reg)
        self.feedback = Counter("mlsd_feedback_events", "Feedback events accepted, "
                                "by event.", ["event"], **reg)
        gauge = {"multiprocess_mode": "livesum"} if multiprocess() else {}
        self.log_pending = Gauge("mlsd_log_pending_rows", "Rows queued for the "
                                 "prediction log and feedback, not yet committed.",
                                 **gauge, **reg)
        self.log_dropped = Counter("mlsd_log_dropped_rows", "Rows the prediction "
                                   "log dropped because its queue was full.", **reg)
        self.swaps = Counter("mlsd_model_swaps", "Models loaded in place of the "
                             "one served (a promotion).", **reg)

    def render(self) -> tuple[bytes, str]:
        """The exposition text (every worker's, in multiprocess mode)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
