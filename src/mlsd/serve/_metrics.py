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

    def render(self, drift: dict[str, Any] | None = None) -> tuple[bytes, str]:
        """The exposition text (every worker's, in multiprocess mode), with
        the gauges of the last ``mlsd monitor`` verdict on the served model
        (``drift``: what it wrote, see :func:`drift_families`)."""
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
        )

        text = b""
        if self.registry is not None:
            text = generate_latest(self.registry)
        else:
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            text = generate_latest(registry)
        if drift:
            registry = CollectorRegistry()
            registry.register(_Families(drift_families(drift)))
            text += generate_latest(registry)
        return text, CONTENT_TYPE_LATEST


class _Families:
    """A collector of ready-made metric families."""

    def __init__(self, families: list):
        self.families = families

    def collect(self):
        return self.families


def drift_families(doc: dict[str, Any]) -> list:
    """Gauges of a monitoring verdict (``.mlsd/monitor/MODEL.json``, written
    by `mlsd monitor`): each input's PSI and missing share, the prediction's
    PSI, the live metrics, the alerts, and the verdict's age."""
    import time
    from datetime import datetime

    from prometheus_client.core import GaugeMetricFamily

    model = str(doc.get("model"))
    psi = GaugeMetricFamily("mlsd_drift_psi", "PSI of each input, served against "
                            "training (the last mlsd monitor).",
                            labels=["model_version", "column"])
    missing = GaugeMetricFamily("mlsd_drift_missing_share", "Share of served rows "
                                "missing each input (the last mlsd monitor).",
                                labels=["model_version", "column"])
    for col, s in (doc.get("inputs") or {}).items():
        if s.get("psi") is not None:
            psi.add_metric([model, col], float(s["psi"]))
        missing.add_metric([model, col], float(s.get("missing_test") or 0.0))
    pred = doc.get("prediction") or {}
    if pred.get("psi") is not None:
        psi.add_metric([model, "(prediction)"], float(pred["psi"]))
    alerts = GaugeMetricFamily("mlsd_drift_alerts", "Alerts of the last mlsd "
                               "monitor.", labels=["model_version"])
    alerts.add_metric([model], float(len(doc.get("alerts") or [])))
    live = GaugeMetricFamily("mlsd_live_metric", "Metrics on served rows with a "
                             "natural label (the last mlsd monitor).",
                             labels=["model_version", "metric"])
    for k, v in ((doc.get("live") or {}).get("metrics") or {}).items():
        live.add_metric([model, k], float(v))
    age = GaugeMetricFamily("mlsd_drift_age_seconds", "Seconds since the last "
                            "mlsd monitor's range ended.", labels=["model_version"])
    try:
        age.add_metric([model], time.time() - datetime.fromisoformat(
            str(doc.get("until"))).timestamp())
    except ValueError:
        pass
    return [psi, missing, alerts, live, age]
