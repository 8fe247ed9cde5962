"""`/health` while the service is busy: latency next to 32 `/predict` clients.

Trains the forum-spam example (or reuses ``--work``), starts ``mlsd serve`` in
its own process, then measures ``GET /health`` alone, and again while
``--clients`` threads post ``/predict`` (batches of ``--rows`` rows) as fast as
they can. Also counts the server's threads. Issue 11's goal: /health p99 under
20 ms with 32 concurrent /predict clients, and a stated cap on threads
(``serve.threads``). The last line is one JSON object.

    python benchmarks/serve_health.py --clients 32 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from _served import free_port, trained_example


def _health_latencies(url: str, seconds: float) -> list[float]:
    out = []
    with httpx.Client(timeout=10) as c:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            t = time.perf_counter()
            c.get(url + "/health").raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
            time.sleep(0.01)
    return out


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=None,
                    help="mlsd serve --threads (default: the spec's serve.threads)")
    a = ap.parse_args()
    work, project = trained_example(a.work, "mlsd-serve-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = [] if a.threads is None else ["--threads", str(a.threads)]
    server = subprocess.Popen([sys.executable, "-m", "mlsd", "serve", "--port",
                               str(port), *extra], cwd=project,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        rows = [{"post_id": f"p{i}", "author_id": f"u{i % 50}",
                 "created_at": "2024-05-01T10:00:00Z", "likes": i % 9,
                 "text": "buy cheap followers now " * (1 + i % 5)}
                for i in range(a.rows)]
        idle = _health_latencies(url, min(3.0, a.seconds))
        stop = threading.Event()
        done = [0]

        def client() -> None:
            with httpx.Client(timeout=60) as c:
                while not stop.is_set():
                    c.post(url + "/predict", json=rows).raise_for_status()
                    done[0] += 1

        workers = [threading.Thread(target=client, daemon=True)
                   for _ in range(a.clients)]
        for w in workers:
            w.start()
        time.sleep(1)
        busy = _health_latencies(url, a.seconds)
        threads = len(os.listdir(f"/proc/{server.pid}/task"))
        stop.set()
        for w in workers:
            w.join(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "clients": a.clients, "rows_per_request": a.rows,
        "health_idle_p50_ms": round(statistics.median(idle), 2),
        "health_idle_p99_ms": round(_quantile(idle, 0.99), 2),
        "health_busy_p50_ms": round(statistics.median(busy), 2),
        "health_busy_p99_ms": round(_quantile(busy, 0.99), 2),
        "health_busy_max_ms": round(max(busy), 2),
        "predict_requests": done[0], "server_threads": threads,
    }
    result["goal_met"] = result["health_busy_p99_ms"] < 20
    print(f"/health idle p50 {result['health_idle_p50_ms']} ms, p99 "
          f"{result['health_idle_p99_ms']} ms; next to {a.clients} /predict "
          f"clients p50 {result['health_busy_p50_ms']} ms, p99 "
          f"{result['health_busy_p99_ms']} ms; server threads {threads}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
