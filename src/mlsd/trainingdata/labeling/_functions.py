"""Weak supervision: labeling functions, their votes, and what they are worth.

A labeling function votes one label on the rows it matches and abstains on
the others (``labels.functions``: keywords, a regular expression, a threshold
on a column, an SQL predicate; or a Python function decorated with
:func:`labeling_function`). Applied to every stored row in Arrow batches
(pyarrow's RE2 kernels, DuckDB for SQL), their votes go to the label store as
kind ``function`` with the function's name as source, where ``labels.policy``
(``{from: function}``) turns them into labels by the label model.

The label model is Dawid-Skene (:mod:`._aggregate`: each function's
confusion matrix by EM, abstaining one of its outcomes: a rule that fires on
spam far more than on ham says something by staying silent), after merging
functions that
vote alike far beyond what their accuracies explain (copies of one rule):
EM assumes the voters err independently, and two copies of a bad rule would
otherwise outvote a good one twice. Snorkel's label model does more (a
dependency graph) but needs PyTorch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import DataError, SpecError

ABSTAIN = None
CORRELATED = 0.95
"""Two functions that agree on at least this share of the rows both vote on
(at least ``MIN_SHARED`` rows), and vote on nearly the same rows (``SAME_ROWS``
of the rows either votes on), count as one voter in the label model."""
MIN_SHARED = 20
SAME_ROWS = 0.8


def labeling_function(label: str | None = None, *, name: str | None = None):
    """Mark ``fn(row: dict) -> label | None`` as a labeling function (None:
    abstain). With ``label``, ``fn`` may return True/False instead: True votes
    ``label``."""
    def wrap(fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
        fn.mlsd_labeling_function = {"label": label, "name": name or fn.__name__}
        return fn
    return wrap


def _votes_of_rule(rows: pa.Table, spec) -> pa.Array:
    """Whether each row matches a declared rule (a boolean array, null as
    false)."""
    if spec.where:
        from ...engine._sandbox import check_expression, matches, why

        problem = check_expression(spec.where)
        if problem:
            raise SpecError(f"where {spec.where!r} is not one SQL expression: "
                            f"{problem}")
        try:
            return matches(rows, spec.where)
        except Exception as err:  # noqa: BLE001 - DuckDB's error, said plainly
            raise SpecError(f"where {spec.where!r}: {why(err)}") from None
    if spec.column not in rows.column_names:
        raise SpecError(f"column {spec.column!r} is not in the data")
    col = rows.column(spec.column)
    if spec.keywords or spec.regex:
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(
                col.type):
            col = pc.cast(col, pa.string())
        pattern = spec.regex or (r"(?i)\b(" + "|".join(
            re.escape(k) for k in spec.keywords) + r")\b")
        hit = pc.match_substring_regex(col, pattern)
    else:
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise SpecError(f"above/below: {spec.column!r} holds "
                            f"{col.type}, not numbers")
        hit = None
        if spec.above is not None:
            hit = pc.greater(col, spec.above)
        if spec.below is not None:
            low = pc.less(col, spec.below)
            hit = low if hit is None else pc.and_(hit, low)
    return pc.fill_null(hit, False)


def apply_functions(rows: pa.Table, functions: dict[str, Any],
                    python: list[Callable] | None = None
                    ) -> dict[str, list[str | None]]:
    """Each function's vote on each row (None: it abstains)."""
    out: dict[str, list[str | None]] = {}
    for name, spec in functions.items():
        try:
            hit = _votes_of_rule(rows, spec).to_pylist()
        except SpecError as err:
            raise SpecError(f"labels.functions.{name}: {err}") from None
        out[name] = [spec.label if h else ABSTAIN for h in hit]
    for fn in python or []:
        meta = fn.mlsd_labeling_function
        votes = []
        for row in rows.to_pylist():
            v = fn(row)
            if isinstance(v, bool) and meta["label"] is not None:
                v = meta["label"] if v else None
            votes.append(None if v is None or v is False else str(v))
        out[meta["name"]] = votes
    return out


def correlated_groups(M: np.ndarray, *, threshold: float = CORRELATED,
                      min_shared: int = MIN_SHARED, same_rows: float = SAME_ROWS
                      ) -> list[list[int]]:
    """Groups of voters (columns of ``M``) that vote on nearly the same rows
    (``same_rows`` of the rows either votes on) and agree on at least
    ``threshold`` of those both vote on, transitively; each voter alone
    otherwise. Agreement alone is not enough: two functions that can only
    vote one label always agree where both vote, copies or not; copies also
    fire on the same rows, independent rules of one class do not."""
    m = M.shape[1]
    parent = list(range(m))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(m):
        for j in range(i + 1, m):
            both = (M[:, i] >= 0) & (M[:, j] >= 0)
            either = (M[:, i] >= 0) | (M[:, j] >= 0)
            if both.sum() >= min_shared and both.sum() >= same_rows * either.sum() \
                    and np.mean(M[both, i] == M[both, j]) >= threshold:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(m):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def merged_votes(M: np.ndarray, k: int, groups: list[list[int]]) -> np.ndarray:
    """One column a group: the group's most common vote on the row (-1 when
    all of it abstains)."""
    from ._aggregate import majority_vote

    cols = []
    for g in groups:
        label, _, _ = majority_vote(M[:, g], k)
        cols.append(label)
    return np.stack(cols, axis=1) if cols else np.full((M.shape[0], 0), -1)


def label_model(M: np.ndarray, k: int):
    """Dawid-Skene over the function votes, correlated functions merged
    first and abstaining an outcome (a function fires on one class more than
    on another); fitted on the rows some function votes on. Returns the fit
    (its posterior for those rows), the rows, and the groups."""
    from ._aggregate import dawid_skene

    groups = correlated_groups(M)
    merged = merged_votes(M, k, groups)
    covered = (merged >= 0).any(axis=1)
    fit = dawid_skene(merged[covered], k, abstain_as_vote=True)
    return fit, covered, groups


def function_report(M: np.ndarray, names: list[str], labels: list[str],
                    gold: np.ndarray | None = None) -> dict[str, Any]:
    """Per function: coverage, overlap, conflict and, on the rows with a
    known label (``gold``, -1 elsewhere), empirical accuracy; and the label
    model against majority vote on those rows."""
    from ._aggregate import majority_vote

    n, m = M.shape
    k = len(labels)
    voted = M >= 0
    per = []
    for j, name in enumerate(names):
        mine = voted[:, j]
        others = voted.copy()
        others[:, j] = False
        any_other = others.any(axis=1)
        differ = np.zeros(n, dtype=bool)
        for o in range(m):
            if o != j:
                differ |= voted[:, o] & (M[:, o] != M[:, j])
        row: dict[str, Any] = {
            "function": name, "votes": int(mine.sum()),
            "coverage": round(float(mine.mean()), 4) if n else 0.0,
            "overlap": round(float(np.mean(any_other[mine])), 4) if mine.any()
            else 0.0,
            "conflict": round(float(np.mean(differ[mine])), 4) if mine.any()
            else 0.0,
            "labels": sorted({labels[c] for c in np.unique(M[mine, j])})}
        if gold is not None:
            dev = mine & (gold >= 0)
            row["dev_rows"] = int(dev.sum())
            row["accuracy"] = (round(float(np.mean(M[dev, j] == gold[dev])), 4)
                               if dev.any() else None)
        per.append(row)
    covered = voted.any(axis=1)
    out: dict[str, Any] = {"rows": n, "functions": per,
                           "covered": round(float(covered.mean()), 4) if n else 0.0}
    ds, rows_fit, groups = label_model(M, k)
    model_labels = np.full(n, -1)
    model_labels[rows_fit] = ds.labels
    mv, _, tie = majority_vote(M, k)
    out["merged"] = [[names[i] for i in g] for g in groups if len(g) > 1]
    if gold is not None:
        dev = covered & (gold >= 0)
        if dev.any():
            out["dev_rows"] = int(dev.sum())
            out["label_model_accuracy"] = round(float(np.mean(
                model_labels[dev] == gold[dev])), 4)
            out["majority_accuracy"] = round(float(np.mean(
                mv[dev] == gold[dev])), 4)
            out["majority_ties"] = int(tie[dev].sum())
    out["estimated_accuracy"] = {
        "+".join(names[i] for i in g): round(float(a), 4)
        for g, a in zip(groups, ds.accuracy(), strict=True)}
    return out


def votes_matrix(votes: dict[str, list[str | None]], labels: list[str]
                 ) -> np.ndarray:
    """The functions' votes as codes of ``labels`` (rows x functions)."""
    at = {lb: i for i, lb in enumerate(labels)}
    unknown = sorted({v for vs in votes.values() for v in vs
                      if v is not None and v not in at})
    if unknown:
        raise DataError(f"labeling functions vote {unknown[:5]}, which are not "
                        f"labels of the task ({', '.join(labels)})")
    return np.array([[(-1 if v is None else at[v]) for v in vs]
                     for vs in votes.values()], dtype=np.int64).T.reshape(
        len(next(iter(votes.values()), [])), len(votes))


def store_function_votes(lake, spec, rows: pa.Table,
                         python: list | None = None) -> dict[str, Any]:
    """Run the labeling functions (``labels.functions``, and ``python``:
    functions decorated with :func:`mlsd.trainingdata.labeling.
    labeling_function`) on every stored row of the training union, store
    their votes in the label store (kind ``function``; a function's earlier
    votes are replaced), and measure them: coverage, overlap, conflict,
    accuracy on the rows whose target is known, and the label model against
    majority vote there. ``rows``: every stored row of the training union."""
    from ._store import label_text, replace_labels

    if not spec.labels.functions and not python:
        raise SpecError("no labeling function: declare them in labels.functions "
                        "(keywords, regex, above/below, where)")
    if not spec.key:
        raise SpecError("labeling functions' votes are stored by the row key: set "
                        "`key` on the sources (or dataset.key)")
    votes = apply_functions(rows, spec.labels.functions, python)
    votes = {k: [label_text(v) for v in vs] for k, vs in votes.items()}
    keys = [None if v is None else str(v) for v in rows.column(spec.key).to_pylist()]
    if spec.problem.task == "multilabel":  # each function votes one label yes
        from .._labelsets import parse_labels
        from ._sets import function_report_sets

        gold_sets = [parse_labels(v, spec.problem.separator)
                     for v in rows.column(spec.problem.target).to_pylist()]
        report = function_report_sets(votes, keys, gold_sets)
        labels = sorted({v for vs in votes.values() for v in vs if v is not None}
                        | {lb for g in gold_sets if g for lb in g})
    else:
        report, labels = _single_label_report(votes, rows, spec)
    new = [{"item": k, "label": v, "kind": "function", "source": name,
            "confidence": None, "labelled_at": None,
            "imported_from": "labels.functions", "import_id": None}
           for name, vs in votes.items()
           for k, v in zip(keys, vs, strict=True) if v is not None and k is not None]
    # a function's earlier votes go (one that now abstains on an item loses
    # its vote there), the other labels stay
    version, written = replace_labels(lake, spec.name, new, kind="function",
                                      sources=list(votes), prefix="f")
    return {**report, "labels": labels, "stored_votes": len(new),
            "version": version, "written": written}


def _single_label_report(votes: dict[str, list[str | None]], rows: pa.Table, spec
                         ) -> tuple[dict[str, Any], list[str]]:
    """:func:`function_report` with the target column's labels as gold."""
    from ._store import label_text

    gold_text = [label_text(v) for v in rows.column(spec.problem.target).to_pylist()]
    labels = sorted({v for vs in votes.values() for v in vs if v is not None}
                    | {v for v in gold_text if v is not None})
    M = votes_matrix(votes, labels)
    at = {lb: i for i, lb in enumerate(labels)}
    gold = np.array([-1 if v is None else at[v] for v in gold_text])
    return function_report(M, list(votes), labels, gold), labels
