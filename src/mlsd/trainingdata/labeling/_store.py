"""The label store: one Delta table of every label an item was given, by whom.

A row is one label of one item from one source: ``item`` (the item's key, as
text), ``label`` (a multilabel set as a JSON list), ``kind`` (``human``,
``natural``, ``function``, ``model``), ``source`` (the annotator, the event,
the labeling function or the model artifact), ``confidence``, ``labelled_at``,
the file it came from and the import that stored it. A source's label of an
item replaces the one it gave before (the table is upserted on item, kind
and source); importing the same file twice stores nothing new.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import DataError

AREA = "labels"
KINDS = ("human", "natural", "function", "model")
SCHEMA = pa.schema([
    pa.field("item", pa.string()), pa.field("label", pa.string()),
    pa.field("kind", pa.string()), pa.field("source", pa.string()),
    pa.field("confidence", pa.float64()),
    pa.field("labelled_at", pa.timestamp("us", tz="UTC")),
    pa.field("imported_from", pa.string()), pa.field("import_id", pa.string())])
KEY = ["item", "kind", "source"]


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, list | tuple):  # a label set
        return json.dumps(sorted(str(x) for x in v))
    text = str(v).strip()
    return text or None


def label_text(v: Any) -> str | None:
    """A label as the store keeps it (a bool as true/false, whatever the
    case it was written in)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    text = str(v).strip()
    return text.lower() if text.lower() in ("true", "false") else text


def _time(v: Any) -> datetime | None:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    try:
        t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def label_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Label rows (dicts with the store's fields) as a table of its schema."""
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def read_label_studio(path: Path, *, item_field: str | None = None,
                      ) -> tuple[list[dict[str, Any]], list[str]]:
    """Label rows of a Label Studio JSON export (a list of tasks, each with
    its annotations), and notes on what was left out. The item key is the
    task's ``data[item_field]`` (default: the task id); the label is the
    annotation's choices (several: a label set); the annotator its
    ``completed_by`` (an id or an e-mail). Cancelled annotations and results
    that are not choices are left out, and counted."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a Label Studio JSON export ({err})") from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise DataError(f"{path}: a Label Studio export is a JSON list of tasks")
    rows, cancelled, other, no_item = [], 0, 0, 0
    for n, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise DataError(f"{path}: task {n} is not an object")
        data = task.get("data") or {}
        item = data.get(item_field) if item_field else task.get("id")
        if item is None:
            no_item += 1
            continue
        for ann in task.get("annotations") or []:
            if ann.get("was_cancelled"):
                cancelled += 1
                continue
            who = ann.get("completed_by")
            if isinstance(who, dict):
                who = who.get("email") or who.get("id")
            choices = [c for r in ann.get("result") or []
                       if r.get("type") == "choices"
                       for c in (r.get("value") or {}).get("choices") or []]
            if not choices:
                other += 1
                continue
            rows.append({"item": _text(item),
                         "label": _text(choices if len(choices) > 1 else choices[0]),
                         "kind": "human", "source": _text(who) or "unknown",
                         "confidence": None,
                         "labelled_at": _time(ann.get("created_at"))})
    notes = [f"{k} {what}" for k, what in ((cancelled, "cancelled annotation(s)"),
                                          (other, "annotation(s) without choices"),
                                          (no_item, f"task(s) without "
                                           f"data.{item_field}")) if k]
    return rows, notes


def read_label_file(path: Path, *, item: str, label: str, source: str | None,
                    kind: str = "human", confidence: str | None = None,
                    time: str | None = None, default_source: str | None = None,
                    table: pa.Table | None = None
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """Label rows of a CSV, JSONL, Parquet, ... file (any format mlsd reads;
    ``table``: its rows, already read): one row a label, its columns named by
    the arguments."""
    if table is None:
        from ...etl import read_table

        table = read_table(path).table
    for flag, col in (("--item", item), ("--label", label), ("--annotator", source),
                      ("--confidence", confidence), ("--time", time)):
        if col is not None and col not in table.column_names:
            raise DataError(f"{path}: {flag} {col!r} is not a column (columns: "
                            f"{', '.join(table.column_names)})")
    if source is None and default_source is None:
        raise DataError(f"{path}: name the column of who labelled each row "
                        f"(--annotator COLUMN), or one source for them all "
                        f"(--source NAME)")
    cols = {c: table.column(c).to_pylist() for c in
            {item, label, *(c for c in (source, confidence, time) if c)}}
    rows, skipped = [], 0
    for i in range(table.num_rows):
        it, lb = _text(cols[item][i]), _text(cols[label][i])
        if it is None or lb is None:
            skipped += 1
            continue
        conf = cols[confidence][i] if confidence else None
        rows.append({"item": it, "label": lb, "kind": kind,
                     "source": _text(cols[source][i]) if source else default_source,
                     "confidence": None if conf is None else float(conf),
                     "labelled_at": _time(cols[time][i]) if time else None})
    notes = [f"{skipped} row(s) without an item or a label"] if skipped else []
    return rows, notes


def store_labels(lake, name: str, rows: list[dict[str, Any]], *, origin: str,
                 digest: str) -> dict[str, Any]:
    """Upsert label rows into the store; the same file's labels twice are one
    write. A source that labelled an item twice in one file keeps the last."""
    if not rows:
        raise DataError(f"{origin}: no label to import")
    kinds = {r["kind"] for r in rows} - set(KINDS)
    if kinds:
        raise DataError(f"{origin}: unknown label kind(s) {sorted(kinds)}; "
                        f"expected {', '.join(KINDS)}")
    import_id = "l" + digest[:16]
    latest: dict[tuple, dict] = {}
    for r in rows:
        latest[(r["item"], r["kind"], r["source"])] = {
            **r, "imported_from": origin, "import_id": import_id}
    table = label_table(list(latest.values()))
    before = lake.version(AREA, name)
    if before is not None and holds(lake.read(AREA, name), table):
        version, written = before, False  # every label already there
    else:
        version, written = lake.write(AREA, name, table, write_id=import_id,
                                      mode="upsert", key=KEY)
    return {"rows": len(rows), "stored": table.num_rows,
            "replaced_in_file": len(rows) - table.num_rows,
            "items": len({r["item"] for r in rows}),
            "sources": sorted({r["source"] for r in rows}),
            "version": version, "written": written,
            "new_table": before is None}


def _facts(table: pa.Table) -> set[tuple]:
    cols = ["item", "kind", "source", "label", "confidence", "labelled_at"]
    return set(zip(*(table.column(c).to_pylist() for c in cols), strict=True))


def holds(stored: pa.Table, rows: pa.Table) -> bool:
    """Whether the store already holds every label of ``rows`` as it is
    (same item, kind, source, label, confidence and time): importing them
    again would change nothing, whatever was written since."""
    return _facts(rows) <= _facts(stored)


def replace_labels(lake, name: str, rows: list[dict[str, Any]], *, kind: str,
                   sources: list[str] | None = None, prefix: str
                   ) -> tuple[int | None, bool]:
    """Replace the store's labels of ``kind`` (of ``sources`` only, when
    given) by ``rows``, every other label kept: a function that now abstains,
    a window that closed, a new pseudo-labelling pass leave nothing stale.
    Nothing is written when the store already holds exactly these labels.
    Returns the store's version and whether it was written."""
    from ...runtime import digest

    stored = read_labels(lake, name)
    mine = pc.equal(stored.column("kind"), kind)
    if sources is not None:
        mine = pc.and_(mine, pc.is_in(stored.column("source"), pa.array(sources)))
    kept, theirs = stored.filter(pc.invert(mine)), stored.filter(mine)
    write_id = prefix + digest({"rows": rows, "kept": kept.num_rows})[:16]
    fresh = label_table([{**r, "import_id": write_id} for r in rows])
    if stored.num_rows and theirs.num_rows == fresh.num_rows and holds(theirs,
                                                                       fresh):
        return lake.version(AREA, name), False
    empty = label_table([])
    table = pa.concat_tables([kept.select(empty.column_names).cast(empty.schema),
                              fresh])
    return lake.write(AREA, name, table, write_id=write_id)


def file_digest(path: Path, options: dict[str, Any]) -> str:
    """What identifies an import: the file's bytes and how it was read."""
    h = hashlib.sha256(Path(path).read_bytes())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()


def read_labels(lake, name: str, *, kinds: tuple[str, ...] | None = None,
                exclude: list[str] | tuple[str, ...] = ()) -> pa.Table:
    """The stored labels (of ``kinds``, less the ``exclude`` sources), or an
    empty table."""
    if not lake.exists(AREA, name):
        return label_table([])
    table = lake.read(AREA, name)
    if kinds:
        table = table.filter(pc.is_in(table.column("kind"), pa.array(list(kinds))))
    if exclude:
        table = table.filter(pc.invert(pc.is_in(table.column("source"),
                                                pa.array(list(exclude)))))
    return table


def remove_source(lake, name: str, source: str) -> dict[str, Any]:
    """Remove every label of ``source`` from the store (a new version; the
    versions before keep them until a vacuum)."""
    if not lake.exists(AREA, name):
        raise DataError("the label store is empty: nothing to exclude")
    known = set(lake.read(AREA, name).column("source").to_pylist())
    if source not in known:
        raise DataError(f"no label from {source!r} in the store (sources: "
                        f"{', '.join(sorted(known)[:20])})")
    return lake.erase(AREA, name, ["source"], {(source,)})


def vote_matrix(table: pa.Table, *, order: list[str] | None = None
                ) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """The labels as a vote matrix: (items x sources) of label codes, -1 where
    a source gave none; with the items, sources and labels (``order``, or
    sorted) the codes stand for."""
    items = sorted(set(table.column("item").to_pylist()))
    sources = sorted(set(table.column("source").to_pylist()))
    values = table.column("label").to_pylist()
    seen = sorted(set(values))
    if order:
        unknown = [v for v in seen if v not in order]
        if unknown:
            raise DataError(f"labels.order: label(s) {unknown[:5]} are not in the "
                            f"order given ({', '.join(order)})")
        labels = list(order)
    else:
        labels = seen
    at_item = {v: i for i, v in enumerate(items)}
    at_source = {v: i for i, v in enumerate(sources)}
    at_label = {v: i for i, v in enumerate(labels)}
    M = np.full((len(items), len(sources)), -1, dtype=np.int64)
    for it, src, lb in zip(table.column("item").to_pylist(),
                           table.column("source").to_pylist(), values, strict=True):
        M[at_item[it], at_source[src]] = at_label[lb]
    return M, items, sources, labels


def import_file(lake, name: str, root: Path, path: str | Path, *,
                key: str | None, fmt: str | None = None, item: str | None = None,
                label: str = "label", annotator: str | None = "annotator",
                source: str | None = None, kind: str = "human",
                confidence: str | None = None, time: str | None = None,
                separator: str | None = None) -> dict[str, Any]:
    """Store the labels of a file in the label store.

    ``fmt`` ``labelstudio`` reads a Label Studio JSON export (the item key is
    the task's ``data[item]``, by default ``key`` when the tasks carry it,
    else the task id; a ``.json`` list of tasks with annotations is
    recognised without ``fmt``); any other file is one label a row, in the
    columns ``item`` (default: ``key``, else ``item``), ``label`` and
    ``annotator`` (or one ``source`` for every row), with an optional
    ``confidence`` and ``time``. A source's label of an item replaces the one
    it gave before; the same file imported twice stores nothing new.
    ``separator`` (the multilabel task's): each label is a label set (a JSON
    list, labels joined by it, or a Label Studio task's choices), stored as a
    sorted JSON list.
    """
    path = Path(path)
    if not path.is_absolute():
        path = Path(root) / path
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt is None and path.suffix.lower() == ".json":
        try:  # a Label Studio export is a list of tasks with annotations
            doc = json.loads(path.read_text(encoding="utf-8"))
            first = doc[0] if isinstance(doc, list) and doc else doc
            if isinstance(first, dict) and "annotations" in first:
                fmt = "labelstudio"
        except (ValueError, OSError):
            pass
    options = {"fmt": fmt, "item": item, "label": label, "annotator": annotator,
               "source": source, "kind": kind, "confidence": confidence,
               "time": time}
    if fmt == "labelstudio":
        rows, notes = read_label_studio(path, item_field=item or key)
        if not rows and item is None and key:  # the tasks carry no key: ids
            rows, notes = read_label_studio(path, item_field=None)
    else:
        from ...etl import read_table

        table = read_table(path).table
        cols = table.column_names
        if item is None:
            item = key if key and key in cols else "item"
        who = None if source is not None and annotator == "annotator" and (
            "annotator" not in cols) else annotator
        rows, notes = read_label_file(path, item=item, label=label, source=who,
                                      kind=kind, confidence=confidence, time=time,
                                      default_source=source, table=table)
    if separator is not None:
        from .._labelsets import parse_labels
        from ._sets import set_text

        for r in rows:
            found = parse_labels(r["label"], separator)
            r["label"] = None if found is None else set_text(found)
    try:
        origin = str(path.relative_to(root))
    except ValueError:
        origin = str(path)
    out = store_labels(lake, name, rows, origin=origin,
                       digest=file_digest(path, options))
    return {"file": origin, "format": fmt or path.suffix.lstrip("."),
            **out, "notes": notes}
