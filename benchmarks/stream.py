"""`mlsd consume` against the broker's own limit, on the real servers.

For each broker (RabbitMQ on 127.0.0.1:5672, Redis on 127.0.0.1:6379), a
producer process publishes ``--messages`` JSON messages to a fresh queue
(stream) while a consumer reads them:

* **limit**: the broker's own client in a plain loop: fetch in batches of
  ``--batch-rows``, decode nothing, acknowledge each batch (pika with a
  prefetch and one multiple-ack; redis-py XREADGROUP + XACK): the raw
  publish+consume loop, the fastest messages go through this server;
* **mlsd**: ``mlsd consume`` (decode, type, validate, dedupe by id, one Delta
  commit per micro-batch, acknowledge), in process.

Messages/s run from the producer's start to the last message acknowledged
(the consumer is connected first); the drain rate of a queue filled
beforehand is measured too (``drain``: the consumer alone). Goal (issue 17):
mlsd at least half the limit.

``--scoring``: stream scoring too (``mlsd serve --stream`` on the trained
forum-spam example: request rows from a queue, answers published, every
prediction logged), against the plain loop as a request/response loop
(fetch, publish one answer a message, acknowledge: no decoding, no model);
each side runs ``--repeat`` times, interleaved, and the best run of each is
compared (a loop of 50,000 messages lasts under a second: one run is at the
mercy of a busy moment).
``--fault``: the consumer's fault test at this size
(tests/etl/test_consume_faults.py: SIGKILLs while a producer sends; each
message stored once). The last line is one JSON object.

    python benchmarks/stream.py --messages 100000 --scoring --fault
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import secrets
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

RABBIT = "rabbitmq://guest@127.0.0.1:5672/"
REDIS = "redis://127.0.0.1:6379/0"


def _event(i: int) -> bytes:
    return json.dumps({"event_id": i, "user": f"u{i % 97}", "amount": float(i % 500),
                       "country": ("FR", "DE", "US")[i % 3],
                       "at": f"2024-05-{1 + i % 28:02d}T10:{i % 60:02d}:00",
                       "bought": i % 3 == 0}).encode()


def _publish(kind: str, queue: str, n: int) -> float:
    t = time.perf_counter()
    if kind == "rabbitmq":
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        for i in range(n):
            ch.basic_publish("", queue, _event(i), pika.BasicProperties(
                message_id=f"m{i}", delivery_mode=2))
        conn.close()
    else:
        import redis

        r = redis.Redis.from_url(REDIS)
        for start in range(0, n, 1000):
            pipe = r.pipeline(transaction=False)
            for i in range(start, min(n, start + 1000)):
                pipe.xadd(queue, {"payload": _event(i)})
            pipe.execute()
        r.close()
    return n / (time.perf_counter() - t)


def _limit(kind: str, queue: str, n: int, batch: int, ready=None,
           out: str | None = None) -> tuple[float, float]:
    """The broker's client alone: fetch, acknowledge each batch, nothing else
    (with ``out``: also publish each message's body there as its answer, a
    request/response loop). Messages/s, and the end time (perf_counter) of
    the last acknowledgement."""
    got = 0
    if kind == "rabbitmq":
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch, pub = conn.channel(), conn.channel()
        ch.queue_declare(queue, durable=True)
        if out:
            pub.queue_declare(out, durable=True)
        ch.basic_qos(prefetch_count=batch)
        gen = ch.consume(queue, auto_ack=False, inactivity_timeout=5)
        if ready is not None:
            ready()
        t = time.perf_counter()
        while got < n:
            method, props, body = next(gen)
            if method is None:
                break
            got += 1
            if out:
                pub.basic_publish("", out, body, pika.BasicProperties(
                    message_id=props.message_id, delivery_mode=2))
            if got % batch == 0 or got == n:
                if out:
                    pub.basic_qos(prefetch_count=0)  # as mlsd: all reached out
                ch.basic_ack(method.delivery_tag, multiple=True)
        seconds = time.perf_counter() - t
        ch.cancel()
        conn.close()
    else:
        import redis

        r = redis.Redis.from_url(REDIS)
        r.xgroup_create(queue, "limit", id="0", mkstream=True)
        if ready is not None:
            ready()
        t = time.perf_counter()
        while got < n:
            resp = r.xreadgroup("limit", "c1", {queue: ">"}, count=batch, block=5000)
            if not resp:
                break
            entries = resp[0][1]
            if out:
                pipe = r.pipeline(transaction=False)
                for i, f in entries:
                    pipe.xadd(out, {"payload": f[b"payload"], "message_id": i})
                pipe.execute()
            r.xack(queue, "limit", *[i for i, _ in entries])
            got += len(entries)
        seconds = time.perf_counter() - t
        r.close()
    if got < n:
        raise SystemExit(f"{kind}: the plain loop read {got} of {n}")
    return n / seconds, time.perf_counter()


def _reply_client(kind: str, queue: str, out: str, batch: int, name: str, go,
                  results) -> None:
    """One of several plain request/response loops on one queue (a process):
    fetch a batch, publish each body as its answer, acknowledge; until the
    queue has been empty a second. Puts (messages, perf_counter of the last
    acknowledgement): one clock for every process of the machine."""
    got, last = 0, 0.0
    if kind == "rabbitmq":
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch, pub = conn.channel(), conn.channel()
        pub.queue_declare(out, durable=True)
        ch.basic_qos(prefetch_count=batch)
        go.wait()
        held = 0
        for method, props, body in ch.consume(queue, auto_ack=False,
                                              inactivity_timeout=1):
            if method is None:
                break
            pub.basic_publish("", out, body, pika.BasicProperties(
                message_id=props.message_id, delivery_mode=2))
            held += 1
            if held == batch or ch.get_waiting_message_count() == 0:
                pub.basic_qos(prefetch_count=0)
                ch.basic_ack(method.delivery_tag, multiple=True)
                got, held, last = got + held, 0, time.perf_counter()
        ch.cancel()
        conn.close()
    else:
        import redis

        r = redis.Redis.from_url(REDIS)
        go.wait()
        while True:
            resp = r.xreadgroup("limit", name, {queue: ">"}, count=batch, block=1000)
            if not resp:
                break
            entries = resp[0][1]
            pipe = r.pipeline(transaction=False)
            for i, f in entries:
                pipe.xadd(out, {"payload": f[b"payload"], "message_id": i})
            pipe.execute()
            r.xack(queue, "limit", *[i for i, _ in entries])
            got, last = got + len(entries), time.perf_counter()
        r.close()
    results.put((got, last))


def _limit_clients(kind: str, queue: str, n: int, batch: int, clients: int) -> float:
    """The plain request/response loop in ``clients`` processes at once (as
    many as mlsd's workers): messages/s from the start signal to the last
    acknowledgement."""
    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    if kind == "redis":
        import redis

        r = redis.Redis.from_url(REDIS)
        r.xgroup_create(queue, "limit", id="0", mkstream=True)
        r.close()
    procs = [ctx.Process(target=_reply_client, args=(kind, queue, f"{queue}.out", batch,
                                                     f"c{k}", go, results))
             for k in range(clients)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # connected and waiting
    t = time.perf_counter()
    go.set()
    done = [results.get() for _ in procs]
    for p in procs:
        p.join()
    read = sum(g for g, _ in done)
    if read != n:
        raise SystemExit(f"{kind}: {clients} plain loops read {read} of {n}")
    return n / (max(last for _, last in done) - t)


def _mlsd(kind: str, queue: str, n: int, batch: int, work: Path, ready=None
          ) -> tuple[float, dict, float]:
    from mlsd.pipeline import Project, consume

    folder = work / f"{kind}-project-{queue}"
    folder.mkdir()
    spec = {"name": "bench", "problem": {"task": "binary", "target": "bought"},
            "sources": {"events": {
                "broker": RABBIT if kind == "rabbitmq" else REDIS, "queue": queue,
                "id_from": "message_id" if kind == "rabbitmq" else "entry_id",
                "batch_rows": batch, "batch_seconds": 5}},
            "validate": {"required": ["event_id", "user"],
                         "ranges": {"amount": [0, None]},
                         "allowed": {"country": ["FR", "DE", "US"]}},
            "features": [{"column": "amount"}]}
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    (folder / "schemas").mkdir()
    (folder / "schemas" / "events.yaml").write_text(yaml.safe_dump({
        "source": "events", "columns": {"event_id": "int64", "user": "string",
                                        "amount": "float64", "country": "string",
                                        "at": "timestamp", "bought": "bool"}}))
    proj = Project.find(start=folder)
    proj.lake  # noqa: B018 - its imports, before the clock starts
    import gc

    gc.collect()
    gc.freeze()  # as `mlsd consume` does before it starts
    marks: list[float] = []

    def on_batch(r) -> None:
        if not marks and ready is not None:
            ready()
        marks.append(time.perf_counter())
    if ready is not None:  # the producer starts once the consumer is up
        import threading

        threading.Timer(0.5, lambda: marks or ready()).start()
    res = consume(proj, "events", max_messages=n, idle_seconds=10,
                  on_batch=on_batch)
    # from the consumer's start (connection and id store included) to the
    # last batch acknowledged
    seconds = res["seconds"] - (time.perf_counter() - marks[-1])
    if res["stored"] != n:
        raise SystemExit(f"{kind}: mlsd stored {res['stored']} of {n}: {res}")
    return n / seconds, res, marks[-1]


def _through(kind: str, queue: str, n: int, consumer) -> float:
    """Messages/s from the producer's start (another process) to the last
    acknowledgement, the consumer connected first."""
    ctx = multiprocessing.get_context("spawn")
    producer = ctx.Process(target=_publish, args=(kind, queue, n))
    started: list[float] = []

    def ready() -> None:
        if not started:
            started.append(time.perf_counter())
            producer.start()
    end = consumer(ready)
    producer.join()
    return n / (end - started[0])


def _scoring(kind: str, n: int, work: Path, workers: int = 1,
             model: str = "example", repeat: int = 3) -> dict:
    """Stream scoring against the plain loop, on the trained example (or,
    ``model="numbers"``, a model of ten numbers and no text), each measured
    ``repeat`` times, interleaved; the best run of each side."""
    import pyarrow.csv as pacsv
    from _served import trained_example, trained_numbers

    from mlsd.pipeline import Project
    from mlsd.serve._stream import project_stream

    if model == "numbers":
        _, project = trained_numbers(work / "served", "mlsd-stream-bench-")
        rows = pacsv.read_csv(project.parent / "diabetes.csv").drop(
            ["target"]).to_pylist()
    else:
        _, project = trained_example(work / "served", "mlsd-stream-bench-")
        rows = pacsv.read_csv(project / "data" / "new_posts.csv").to_pylist()
    bodies = [json.dumps(rows[i % len(rows)], default=str).encode() for i in range(n)]
    spec_file = project / "mlsd.yaml"
    original = spec_file.read_text()
    limits, limits_n, mine, res = [], [], [], {}
    for _ in range(repeat):  # interleaved: a busy spell slows both sides
        qs = [f"mlsd-bench-{secrets.token_hex(4)}" for _ in range(4)]
        doc = yaml.safe_load(original)
        doc.setdefault("serve", {})["workers"] = workers
        doc["serve"]["stream"] = {
            "broker": RABBIT if kind == "rabbitmq" else REDIS, "queue": qs[1],
            "predictions": qs[2], "id_from": "message_id" if kind == "rabbitmq"
            else "entry_id", "batch_rows": 500, "batch_seconds": 0.05}
        try:
            spec_file.write_text(yaml.safe_dump(doc, sort_keys=False))
            for q in (qs[0], qs[1], qs[3]):
                _publish_bodies(kind, q, bodies)
            limits.append(_limit(kind, qs[0], n, 500, out=f"{qs[0]}.out")[0])
            limits_n.append(limits[-1] if workers == 1 else
                            _limit_clients(kind, qs[3], n, 500, workers))
            proj = Project.of(project)
            ready: list[float] = []
            res = project_stream(proj, max_messages=n, idle_seconds=5,
                                 on_ready=lambda r=ready: r.append(time.time()))
            # from every worker loaded and connected to the last batch
            # acknowledged (as the plain loops are timed: not the processes'
            # exit, nor the log's last flush)
            end = datetime.fromisoformat(res["last_batch_at"]).timestamp()
            mine.append(res["scored"] / (end - ready[0]))
        finally:
            spec_file.write_text(original)
            _drop(kind, [*qs, f"{qs[1]}.dead", f"{qs[0]}.out", f"{qs[3]}.out"])
    # each side's best run: the limit is the fastest the plain loop went, and
    # mlsd is given the same chance
    limit, limit_n, best = max(limits), max(limits_n), max(mine)
    return {"scoring_per_s": round(best), "scoring_limit_per_s": round(limit),
            "scoring_vs_limit": round(best / limit, 3),
            "scoring_workers": workers,
            "scoring_limit_same_processes_per_s": round(limit_n),
            "scoring_vs_limit_same_processes": round(best / limit_n, 3),
            "scoring_runs": {"mlsd": [round(x) for x in mine],
                             "limit": [round(x) for x in limits],
                             "limit_same_processes": [round(x) for x in limits_n]},
            "scored": res["scored"], "logged": res["logged"]}


def _publish_bodies(kind: str, queue: str, bodies: list[bytes]) -> None:
    if kind == "rabbitmq":
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        for i, b in enumerate(bodies):
            ch.basic_publish("", queue, b, pika.BasicProperties(message_id=f"r{i}"))
        conn.close()
    else:
        import redis

        r = redis.Redis.from_url(REDIS)
        for start in range(0, len(bodies), 1000):
            pipe = r.pipeline(transaction=False)
            for b in bodies[start:start + 1000]:
                pipe.xadd(queue, {"payload": b})
            pipe.execute()
        r.close()


def _fault(n: int) -> dict:
    """The consumer's fault test at this size (a pytest run)."""
    import os
    import subprocess
    import sys

    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                           "no:cacheprovider", "tests/etl/test_consume_faults.py"],
                          cwd=Path(__file__).resolve().parents[1], text=True,
                          capture_output=True,
                          env={**os.environ, "MLSD_FAULT_MESSAGES": str(n)})
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return {"fault_messages": n, "fault_exactly_once": proc.returncode == 0,
            "fault_seconds": round(time.perf_counter() - t, 1), "fault_pytest": tail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--batch-rows", type=int, default=5000,
                    help="messages per micro-batch (the source default)")
    ap.add_argument("--brokers", default="rabbitmq,redis")
    ap.add_argument("--scoring", action="store_true",
                    help="also stream scoring (mlsd serve --stream)")
    ap.add_argument("--scoring-only", action="store_true",
                    help="only stream scoring (not consume)")
    ap.add_argument("--scoring-messages", type=int, default=50_000,
                    help="--scoring: requests scored (at most --messages)")
    ap.add_argument("--workers", type=int, default=1,
                    help="--scoring: scoring processes (serve.workers)")
    ap.add_argument("--model", choices=("example", "numbers"), default="example",
                    help="--scoring: the forum-spam example (text and numbers) or "
                         "a model of ten numbers and no text (scikit-learn's "
                         "diabetes)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="--scoring: runs of each side, interleaved (the best of "
                         "each is compared)")
    ap.add_argument("--fault", action="store_true",
                    help="also the SIGKILL fault test with --messages messages")
    a = ap.parse_args()
    results = {}
    n, b = a.messages, a.batch_rows
    with tempfile.TemporaryDirectory(prefix="mlsd-stream-bench-") as tmp:
        for kind in a.brokers.split(",") if not a.scoring_only else ():
            qs = [f"mlsd-bench-{secrets.token_hex(4)}" for _ in range(4)]
            try:
                pub = _publish(kind, qs[0], n)
                _publish(kind, qs[1], n)
                drain_limit = _limit(kind, qs[0], n, b)[0]
                drain_mlsd, res, _ = _mlsd(kind, qs[1], n, b, Path(tmp))
                limit = _through(kind, qs[2], n, lambda ready, k=kind, q=qs[2]:
                                 _limit(k, q, n, b, ready)[1])
                mine = _through(kind, qs[3], n, lambda ready, k=kind, q=qs[3]:
                                _mlsd(k, q, n, b, Path(tmp), ready)[2])
            finally:
                _drop(kind, [*qs, *(f"{q}.dead" for q in qs)])
            results[kind] = {"publish_per_s": round(pub), "limit_per_s": round(limit),
                             "mlsd_per_s": round(mine),
                             "mlsd_vs_limit": round(mine / limit, 3),
                             "drain_limit_per_s": round(drain_limit),
                             "drain_mlsd_per_s": round(drain_mlsd),
                             "drain_vs_limit": round(drain_mlsd / drain_limit, 3),
                             "batches": res["batches"]}
            print(f"{kind:8s} publish+consume: plain loop {limit:8.0f}/s, mlsd "
                  f"{mine:8.0f}/s ({mine / limit:.2f} of the limit); draining a "
                  f"full queue: plain {drain_limit:8.0f}/s, mlsd {drain_mlsd:8.0f}/s "
                  f"({drain_mlsd / drain_limit:.2f}); publish alone {pub:8.0f}/s",
                  flush=True)
        if a.scoring or a.scoring_only:
            for kind in a.brokers.split(","):
                sc = _scoring(kind, min(n, a.scoring_messages), Path(tmp), a.workers,
                              a.model, a.repeat)
                results.setdefault(kind, {}).update(sc)
                print(f"{kind:8s} stream scoring: plain loop "
                      f"{sc['scoring_limit_per_s']}/s (in {a.workers} processes: "
                      f"{sc['scoring_limit_same_processes_per_s']}/s), mlsd serve "
                      f"--stream --workers {a.workers} {sc['scoring_per_s']}/s "
                      f"({sc['scoring_vs_limit']:.2f} of the limit, "
                      f"{sc['scoring_vs_limit_same_processes']:.2f} of the loop in as "
                      f"many processes; {sc['logged']} logged; best of "
                      f"{a.repeat}: mlsd {sc['scoring_runs']['mlsd']}, loop "
                      f"{sc['scoring_runs']['limit']})", flush=True)
    summary = {"messages": n, "batch_rows": b, "model": a.model, **results,
               "goal_half_the_limit": all(r[k] >= 0.5 for r in results.values()
                                          for k in ("mlsd_vs_limit",
                                                    "scoring_vs_limit") if k in r)}
    if a.fault:
        summary.update(_fault(n))
        print(f"fault test, {n} messages: exactly once "
              f"{summary['fault_exactly_once']} ({summary['fault_seconds']} s)",
              flush=True)
    print(json.dumps(summary))


def _drop(kind: str, queues: list[str]) -> None:
    if kind == "rabbitmq":
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch = conn.channel()
        for q in queues:
            ch.queue_delete(q)
        conn.close()
    else:
        import redis

        r = redis.Redis.from_url(REDIS)
        r.delete(*queues)
        r.close()


if __name__ == "__main__":
    main()
