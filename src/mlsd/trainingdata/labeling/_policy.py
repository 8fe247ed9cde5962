"""The training table's target from ``labels.policy``: rule by rule, a row
takes the label of the first rule that has one for it (the sources' target
column, or the label store's aggregate of one kind of source, sure enough)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import DataError
from ._store import read_labels, vote_matrix

LABEL_FROM = "_label_from"
"""The training table's column naming the rule each row's label came from."""
LABEL_CONFIDENCE = "_label_confidence"
"""The training table's column of each label's confidence (1 for the column's
own labels): what ``labels.weigh_by_confidence`` multiplies the loss by."""


def store_labels_by_item(lake, name: str, kind: str, method: str,
                         exclude: list[str] | tuple[str, ...] = (), *,
                         multilabel: bool = False,
                         gold: dict[str, list[str]] | None = None
                         ) -> dict[str, tuple[str, float]]:
    """item -> (label, confidence) of the store's ``kind`` labels (less the
    ``exclude`` sources), one an item by ``method`` (majority or
    dawid_skene); a model's pseudo-labels keep their own confidence (the
    surest, when models disagree), natural labels are taken as they are.
    ``multilabel``: labels are sets, aggregated label by label (``._sets``;
    ``gold``, the sets known by item, anchor Dawid-Skene)."""
    from ._aggregate import dawid_skene, majority_vote

    table = read_labels(lake, name, kinds=(kind,), exclude=exclude)
    if table.num_rows == 0:
        return {}
    if kind in ("model", "natural"):  # a model's own label and confidence,
        # or what users did (one source per item: nothing to aggregate)
        best: dict[str, tuple[str, float]] = {}
        for it, lb, c in zip(table.column("item").to_pylist(),
                             table.column("label").to_pylist(),
                             table.column("confidence").to_pylist(), strict=True):
            c = 1.0 if c is None else float(c)
            if it not in best or c > best[it][1]:
                best[it] = (lb, c)
        return best
    if multilabel:
        from ._sets import aggregate_sets

        return aggregate_sets(table, method, partial=kind == "function",
                              gold=gold)[0]
    M, items, _, labels = vote_matrix(table)
    if method == "dawid_skene" and kind == "function":  # copies of a rule: one
        from ._functions import label_model

        ds, covered, _ = label_model(M, len(labels))  # every stored item votes
        chosen = np.full(len(items), -1)
        conf = np.zeros(len(items))
        chosen[covered], conf[covered] = ds.labels, ds.confidence
    elif method == "dawid_skene":
        ds = dawid_skene(M, len(labels))
        chosen, conf = ds.labels, ds.confidence
    else:
        chosen, conf, _ = majority_vote(M, len(labels))
    return {it: (labels[c], float(p)) for it, c, p in zip(items, chosen, conf,
                                                         strict=True) if c >= 0}


def apply_policy(rows: pa.Table, *, target: str, key: str, policy: list,
                 default_method: str, lake, name: str,
                 exclude: list[str] | tuple[str, ...] = (),
                 separator: str | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """``rows`` with the policy's target (null where no rule has a label) and
    a ``_label_from`` column; and what each rule gave, for the lineage.
    ``separator`` (the multilabel task's): a stored label is a set (a JSON
    list in the target), the column's sets anchor the aggregation."""
    n = rows.num_rows
    keys = [None if v is None else str(v) for v in rows.column(key).to_pylist()]
    column = rows.column(target).to_pylist()
    values: list[Any] = [None] * n
    came: list[str | None] = [None] * n
    sure: list[float | None] = [None] * n
    counts: dict[str, Any] = {}
    gold = None
    if separator is not None:
        from .._labelsets import parse_labels

        gold = {k: g for k, v in zip(keys, column, strict=True)
                if k is not None and (g := parse_labels(v, separator)) is not None}
    for rule in policy:
        took = 0
        if rule.from_ == "column":
            for i, v in enumerate(column):
                if values[i] is None and v is not None:
                    values[i], came[i], sure[i] = v, "column", 1.0
                    took += 1
            counts["column"] = {"rows": took}
            continue
        method = rule.aggregate or default_method
        found = store_labels_by_item(lake, name, rule.from_, method, exclude,
                                     multilabel=separator is not None, gold=gold)
        unsure = 0
        for i, k in enumerate(keys):
            if values[i] is not None or k not in found:
                continue
            label, conf = found[k]
            if conf < rule.min_confidence:
                unsure += 1
                continue
            values[i], came[i], sure[i] = label, rule.from_, conf
            took += 1
        counts[rule.from_] = {"rows": took, "aggregate": method,
                              "min_confidence": rule.min_confidence,
                              "items_in_store": len(found),
                              "too_unsure": unsure,
                              "items_not_in_data": len(set(found) - set(keys))}
    typ = rows.schema.field(target).type
    try:
        new = _as_type(values, typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
        bad = sorted({str(v) for v, c in zip(values, came, strict=True)
                      if c not in (None, "column")})[:5]
        raise DataError(f"labels.policy: stored labels {bad} do not fit the target "
                        f"{target!r} ({typ}): {err}") from None
    at = rows.column_names.index(target)
    rows = rows.set_column(at, target, new)
    rows = rows.append_column(LABEL_FROM, pa.array(came, pa.string()))
    rows = rows.append_column(LABEL_CONFIDENCE, pa.array(sure, pa.float64()))
    return rows, counts


def _as_type(values: list, typ: pa.DataType) -> pa.Array:
    """Labels (the column's own values, or stored text) as the target's type."""
    if pa.types.is_boolean(typ):
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False,
                 "no": False}
        out = []
        for v in values:
            if v is None or isinstance(v, bool):
                out.append(v)
            elif str(v).strip().lower() in words:
                out.append(words[str(v).strip().lower()])
            else:
                raise ValueError(f"{v!r} is not true or false")
        return pa.array(out, pa.bool_())
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pa.array([None if v is None else str(v) for v in values], typ)
    if all(v is None or not isinstance(v, str) for v in values):
        return pa.array(values, typ)  # the column's own values
    return pc.cast(pa.array([None if v is None else str(v) for v in values],
                            pa.string()), typ)


def policy_digest(lake, name: str, policy: list,
                  exclude: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """What the policy reads, for the table stage's settings: the rules, the
    sources left out and the label store's version (a new import makes a new
    table)."""
    return {"rules": [r.model_dump(mode="json", by_alias=True) for r in policy],
            "excluded": sorted(exclude),
            "store_version": lake.version("labels", name)
            if any(r.from_ != "column" for r in policy) else None}

