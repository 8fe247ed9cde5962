"""Scoring from a broker (`mlsd serve --stream`): the REST service's code
path, fed by a queue.

Rows to score arrive on a RabbitMQ queue or a Redis stream
(``serve.stream``), one JSON object a message. They are gathered a moment
(``batch_rows``, ``batch_seconds``), typed by the model's request model and
checked by the spec's rules exactly as ``POST /predict`` does (the same
:class:`~mlsd.serve._app.Served`), scored together, and answered one message
each: to the message's ``reply_to`` with its ``correlation_id`` (RabbitMQ's
request/response), else to ``predictions``. A row that fails gets an answer
with the same details a 422 would carry. Predictions are logged to the lake's
prediction log by the REST service's background writer (the same rows; the
request id is the message's id; a crash loses at most one unwritten batch of
the log, as for REST).

Delivery is at least once: a crash after the answers were published and
before the acknowledgement scores the batch again, and the same request ids
are answered twice (consumers keep the first by ``request_id``).
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import to_json

from ..connectors._brokers import missing_payload
from ..models import ModelArtifact
from ..spec import ServeSpec, StreamServeSpec
from ._app import Served, ServiceLog, _errors, _new_id, _warm


def serve_stream(model_dir: Path, stream: StreamServeSpec,
                 settings: ServeSpec | None = None, *, log: ServiceLog | None = None,
                 trust_unregistered: bool = False,
                 resolve: Callable[[], Path] | None = None,
                 max_messages: int | None = None, idle_seconds: float | None = None,
                 stop: threading.Event | None = None, handle_signals: bool = False,
                 on_batch: Callable[[dict[str, Any]], None] | None = None,
                 on_ready: Callable[[], None] | None = None,
                 broker=None) -> dict[str, Any]:
    """Score the rows arriving on ``stream.queue`` (see the module) until
    ``stop``, a signal (``handle_signals``), ``max_messages`` or
    ``idle_seconds`` without a message. ``resolve`` names the model to serve
    now (an alias's), checked every ``settings.reload_seconds``; ``on_ready``
    is called once the model is loaded and the broker answers, before the
    first fetch (it may wait; a signal meanwhile sets ``stop``). Returns the
    counts, why it stopped, and when the first batch was fetched and the last
    one acknowledged (``first_batch_at``, ``last_batch_at``: ISO 8601, UTC)."""
    from ..connectors._brokers import gather, open_broker, stop_on_signals

    settings = settings or ServeSpec()
    stop = stop or threading.Event()

    def load(folder: Path) -> Served:
        served = Served(ModelArtifact.load(folder,
                                           trust_unregistered=trust_unregistered),
                        settings)
        _warm(served)
        return served

    served, folder = load(Path(model_dir)), Path(model_dir)
    gc.collect()
    gc.freeze()  # what is loaded now stays: out of the collector's walks
    client = broker or open_broker(stream, where="serve.stream")
    writer = None
    if log is not None:
        from ..trainingdata.labeling._natural import LOG_SCHEMA
        from ._log import LogWriter

        # the REST service's log writer: batched commits in the background,
        # never on the scoring path (a crash loses at most one batch)
        writer = LogWriter(log.lake(), "predictions", log.name,
                           LOG_SCHEMA, batch_rows=log.batch_rows,
                           flush_seconds=log.flush_seconds,
                           retention_days=log.retention_days,
                           time_column="predicted_at",
                           json_columns=("inputs", "outputs")).start()
    stats: dict[str, Any] = {"source": client.display, "messages": 0, "scored": 0,
                             "refused": 0, "batches": 0, "logged": 0, "swaps": 0,
                             "model_version": served.version, "stopped_by": "",
                             "first_batch_at": None, "last_batch_at": None}
    checked = last_message = time.monotonic()

    def heard(signal_name: str) -> None:
        stats["stopped_by"] = signal_name
    try:
        with stop_on_signals(stop, handle_signals, heard):
            if on_ready is not None:  # a signal meanwhile is heard: stop is set
                on_ready()
                checked = last_message = time.monotonic()
            while not stop.is_set():
                if resolve is not None and settings.reload_seconds > 0 and \
                        time.monotonic() - checked >= settings.reload_seconds:
                    checked = time.monotonic()
                    now = Path(resolve())
                    if now != folder:  # swapped between batches: none is lost
                        served, folder = load(now), now
                        stats["swaps"] += 1
                        stats["model_version"] = served.version
                room = stream.batch_rows
                if max_messages is not None:
                    room = min(room, max_messages - stats["messages"])
                    if room <= 0:
                        stats["stopped_by"] = stats["stopped_by"] or "max_messages"
                        break
                batch = gather(client, room, stream.batch_seconds, stop)
                if not batch:
                    if idle_seconds is not None and \
                            time.monotonic() - last_message >= idle_seconds:
                        stats["stopped_by"] = stats["stopped_by"] or "idle"
                        break
                    continue
                last_message = time.monotonic()
                stats["first_batch_at"] = stats["first_batch_at"] or _now()
                _score_batch(batch, served, stream, client, writer, log, stats)
                stats["last_batch_at"] = _now()  # answered and acknowledged
                if on_batch:
                    on_batch(stats)
    finally:
        client.close()
        if writer is not None:
            writer.close()
            stats["logged"] = writer.written
    if stop.is_set() and not stats["stopped_by"]:
        stats["stopped_by"] = "stop"
    return stats


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _request_id(msg, stream: StreamServeSpec, row: Any) -> str:
    if stream.id_from == "field" and isinstance(row, dict) and \
            row.get(stream.id_field) is not None:
        return str(row[stream.id_field])
    return msg.message_id or msg.correlation_id or _new_id()


def _by_row(exc: RequestValidationError) -> dict[int, list]:
    """A list's validation errors by row, each located as a one-row
    request's would be (``["body", field]``)."""
    bad: dict[int, list] = {}
    for e in _errors(list(exc.errors())):
        loc = e["loc"]
        if len(loc) < 2 or not isinstance(loc[1], int):
            raise exc  # not about one row: a bug, not a request's fault
        bad.setdefault(loc[1], []).append({**e, "loc": ["body", *loc[2:]]})
    return bad


def _score_batch(batch, served: Served, stream: StreamServeSpec, client, writer,
                 log: ServiceLog | None, stats: dict[str, Any]) -> None:
    """Type, check and score a batch; answer each message; log; acknowledge."""
    answers: list[tuple[Any, str, dict[str, Any]]] = []
    typed, typed_owners = [], []  # rows typed straight from their JSON
    rows, owners = [], []  # the others: parsed, then typed together
    for m in batch:
        if stream.id_from != "field" and m.body:
            try:
                typed.append(served.row_from_json(m.body))
                typed_owners.append((m, _request_id(m, stream, None)))
                continue
            except ValidationError:
                pass  # the way below says what is wrong, as a request's 422
        if (missing := missing_payload(m, stream)) is not None:
            answers.append((m, _request_id(m, stream, None), {"error": [{
                "loc": ["body"], "type": "missing", "msg": missing}]}))
            continue
        try:
            body = json.loads(m.body or b"")
        except ValueError as err:
            answers.append((m, _request_id(m, stream, None), {"error": [{
                "loc": ["body"], "type": "json_invalid", "msg": f"not JSON: {err}"}]}))
            continue
        rid = _request_id(m, stream, body)
        if not isinstance(body, dict):
            answers.append((m, rid, {"error": [{
                "loc": ["body"], "type": "dict_type",
                "msg": "a message holds one row: a JSON object"}]}))
            continue
        if stream.id_from == "field" and stream.id_field not in \
                served.artifact.input_schema["columns"]:  # an id, not an input
            body = {k: v for k, v in body.items() if k != stream.id_field}
        rows.append(body)
        owners.append((m, rid))
    while rows:  # typed together, as a list sent to POST /predict
        try:
            rows, _ = served.validate(rows)
            break
        except RequestValidationError as exc:
            bad = _by_row(exc)
            for i in sorted(bad):
                answers.append((*owners[i], {"error": bad[i]}))
            rows = [r for i, r in enumerate(rows) if i not in bad]
            owners = [o for i, o in enumerate(owners) if i not in bad]
    rows, owners = typed + rows, typed_owners + owners
    while rows:  # the rows together, as a list sent to POST /predict
        try:
            preds, _ = served.score_table(rows, True, None)
        except RequestValidationError as exc:
            bad = _by_row(exc)
            for i in sorted(bad):
                answers.append((*owners[i], {"error": bad[i]}))
            keep = [i for i in range(len(rows)) if i not in bad]
            rows, owners = [rows[i] for i in keep], [owners[i] for i in keep]
            continue
        break
    else:
        preds = []
    now = datetime.now(UTC)
    version, logged = served.version, []
    by_queue: dict[tuple[str, bool], list] = {}

    def answer(m, body: bytes, rid: str) -> None:
        props = {"message_id": rid}
        if m.correlation_id is not None:
            props["correlation_id"] = m.correlation_id
        target = (m.reply_to, False) if m.reply_to else (stream.predictions, True)
        by_queue.setdefault(target, []).append((body, props))
    for m, rid, doc in answers:  # the refused ones
        answer(m, to_json({"request_id": rid, "model_version": version, **doc},
                          fallback=str), rid)
    from ._log import log_row

    for (m, rid), row, pred in zip(owners, rows, preds, strict=True):
        answer(m, to_json({"request_id": rid, "model_version": version,
                           "prediction": pred}, fallback=str), rid)
        if writer is not None:
            item = row.get(log.item_key) if log.item_key else None
            logged.append(log_row(rid, None if item is None else str(item),
                                  version, row, pred, now))
    for (queue, declare), items in by_queue.items():
        client.publish(queue, items, declare=declare)
    if logged:
        writer.add(logged)
    client.ack(batch)
    stats["messages"] += len(batch)
    stats["scored"] += len(preds)
    stats["refused"] += len(batch) - len(preds)
    stats["batches"] += 1


def project_stream(project, model: str | None = None,
                   settings: ServeSpec | None = None, *,
                   trust_unregistered: bool = False, **kwargs) -> dict[str, Any]:
    """`mlsd serve --stream` in a project: the model ``model`` names (default
    serve.model, else the champion, else the latest), ``serve.stream``'s
    broker, the project's prediction log, the model swapped when the alias
    moves; ``serve.workers`` scoring processes. ``kwargs`` go to
    :func:`serve_stream` (``max_messages`` is shared among the workers)."""
    from ..errors import SpecError
    from ._app import project_log

    settings = settings or project.spec.serve
    if settings.stream is None:
        raise SpecError("serve.stream: no broker to score from; add serve.stream "
                        "(broker, queue, predictions, id_from) to mlsd.yaml")
    folder, _ = project.which_model(model)
    if settings.workers > 1:
        return _with_workers(project, model, settings, trust_unregistered, **kwargs)
    fixed = model is not None and Path(model).expanduser().is_dir()
    return serve_stream(folder, settings.stream, settings,
                        log=project_log(project, settings),
                        trust_unregistered=trust_unregistered,
                        resolve=None if fixed else (
                            lambda: project.which_model(model)[0]), **kwargs)


SUMMED = ("messages", "scored", "refused", "batches", "logged", "swaps")


def _as_worker(settings: ServeSpec, k: int) -> ServeSpec:
    """Worker ``k``'s settings (0 is the first): one process, and on Redis a
    consumer of its own in the group (the first keeps the configured name, so
    a restart with one worker takes back what it left)."""
    stream = settings.stream
    if k:
        stream = stream.model_copy(update={"consumer": f"{stream.consumer}.{k + 1}"})
    return settings.model_copy(update={"workers": 1, "stream": stream})


def _with_workers(project, model, settings: ServeSpec, trust: bool, *,
                  max_messages: int | None = None, stop: threading.Event | None = None,
                  handle_signals: bool = False,
                  on_ready: Callable[[], None] | None = None,
                  **kwargs) -> dict[str, Any]:
    """``settings.workers`` scoring processes on the same queue: this one and
    ``workers - 1`` started here (each loads the model, logs its own batches,
    and is a consumer of its own: RabbitMQ and Kafka share a queue's messages
    among consumers, Redis among a group's consumers). Python scores one batch
    at a time per process, so processes are how stream scoring uses more
    than one core. They start fetching together, once every one has loaded
    the model; a stop (a signal here, ``stop``) is passed on to every worker,
    which finishes its batch; a worker whose parent is gone stops too, and a
    worker that ends on its own (a crash, a kill) stops them all and the call
    fails. The workers' figures are summed."""
    import multiprocessing
    import os

    from ..connectors._brokers import stop_on_signals
    from ..errors import MlsdError

    n = settings.workers
    shares = [None] * n if max_messages is None else \
        [max_messages // n + (k < max_messages % n) for k in range(n)]
    conf = {"config": str(project.spec_path), "set": project.overrides,
            "model": model, "trust": trust, "parent": os.getpid(),
            # what a worker can take (a callback or a client stays here)
            "kwargs": {"idle_seconds": kwargs.get("idle_seconds")}}
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    results, go = ctx.Queue(), ctx.Event()
    ready = [ctx.Event() for _ in range(1, n)]
    procs = [ctx.Process(target=_worker_main, name=f"mlsd-stream-{k + 1}",
                         args=(conf, _as_worker(settings, k).model_dump(mode="json"),
                               shares[k], k, results, ready[k - 1], go))
             for k in range(1, n)]
    stop = stop or threading.Event()
    heard: list[str] = []

    def all_ready() -> None:
        # a worker still loading would leave its share of the first batches
        # to the others: every one is ready, then all fetch
        for p, r in zip(procs, ready, strict=True):
            while not r.wait(0.1) and p.is_alive() and not stop.is_set():
                pass
        go.set()
        if on_ready is not None:
            on_ready()
    lost: list[str] = []
    done = threading.Event()

    def watch() -> None:
        # a worker that ends on its own before a stop (a crash, a kill)
        # stops them all: the command then fails, naming it, so whatever
        # supervises it restarts the whole set rather than run short
        while not done.wait(0.5) and not stop.is_set():
            for p in procs:
                if p.exitcode not in (None, 0) and not stop.is_set():
                    lost.append(f"{p.name} (exit code {p.exitcode})")
                    stop.set()
                    return
    with stop_on_signals(stop, handle_signals, heard.append):
        for p in procs:
            p.start()
        threading.Thread(target=watch, name="mlsd-stream-watch", daemon=True).start()
        try:
            mine = project_stream(project, model, _as_worker(settings, 0),
                                  trust_unregistered=trust, max_messages=shares[0],
                                  stop=stop, on_ready=all_ready, **kwargs)
        except BaseException:
            stop.set()
            raise
        finally:
            go.set()
            if stop.is_set():  # a signal or the caller: every worker drains
                for p in procs:
                    if p.is_alive():
                        p.terminate()  # SIGTERM: the batch in hand is finished
            for p in procs:
                p.join()
    done.set()  # the watch ends
    if lost:
        raise MlsdError(f"serve --stream: worker {lost[0]} ended on its own; every "
                        f"worker was stopped after its batch (what they answered "
                        f"is acknowledged, the rest waits in the queue)")
    others = {}
    while len(others) < len(procs) and not results.empty():
        k, res = results.get()
        others[k] = res
    failed = [p.name for k, p in enumerate(procs, 1) if k not in others]
    if failed:
        raise MlsdError(f"serve --stream: worker {', '.join(failed)} ended without "
                        f"its figures (exit code "
                        f"{', '.join(str(p.exitcode) for p in procs)}); see its "
                        f"error above")
    every = [mine, *(others[k] for k in sorted(others))]
    if heard:
        mine["stopped_by"] = heard[0]
    times = {k: [w[k] for w in every if w.get(k)] for k in ("first_batch_at",
                                                            "last_batch_at")}
    return {**mine, **{k: sum(w[k] for w in every) for k in SUMMED},
            "first_batch_at": min(times["first_batch_at"], default=None),
            "last_batch_at": max(times["last_batch_at"], default=None),
            "workers": [{k: w[k] for k in ("source", "stopped_by", *SUMMED,
                                           "first_batch_at", "last_batch_at")}
                        for w in every]}


def _worker_main(conf: dict[str, Any], settings: dict[str, Any],
                 max_messages: int | None, k: int, results, ready, go) -> None:
    """A scoring process started by :func:`_with_workers`: the project as the
    first process read it, its own consumer, its own prediction log writer;
    it fetches once every worker is ready, and stops if its parent is gone."""
    import os

    from ..runtime import Project

    stop = threading.Event()

    def orphaned() -> bool:
        if os.getppid() != conf["parent"]:
            stop.set()
        return stop.is_set()

    def watch() -> None:
        while not stop.wait(1.0):
            orphaned()

    def wait_for_all() -> None:
        ready.set()
        while not go.wait(0.2) and not orphaned():
            pass
    threading.Thread(target=watch, name="mlsd-parent-watch", daemon=True).start()
    proj = Project(spec_path=Path(conf["config"]), overrides=conf["set"])
    spec = type(proj.spec.serve).model_validate(settings)
    res = project_stream(proj, conf["model"], spec, trust_unregistered=conf["trust"],
                         max_messages=max_messages, handle_signals=True, stop=stop,
                         on_ready=wait_for_all, **conf["kwargs"])
    results.put((k, res))
