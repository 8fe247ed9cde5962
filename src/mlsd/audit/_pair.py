"""Audit a train/test pair: every check, one result, JSON-ready."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from . import _checks, _missing, _model
from ._data import Pair, codes_of, make_pair, numeric
from ._leakage import SEVERITIES, Finding

SPLITS = ("random", "stratified", "time", "group")
# findings whose columns the probe model is refitted without
SUSPECT_CHECKS = ("single_feature_power", "target_derived_feature", "id_like_column",
                  "feature_after_target_time", "preprocessed_before_split",
                  "outcome_signature")


@dataclass
class AuditResult:
    """Findings (worst first), the data profile, per-feature numbers."""

    findings: list[Finding]
    task: str
    target: str
    rows: dict[str, int]
    profile: dict[str, Any]
    features: dict[str, dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)
    model: dict[str, Any] | None = None
    design: dict[str, Any] = field(default_factory=dict)
    missingness: list[dict[str, Any]] = field(default_factory=list)

    def worst(self) -> str | None:
        """The highest severity found, or None."""
        found = {f.severity for f in self.findings}
        for s in reversed(SEVERITIES):
            if s in found:
                return s
        return None

    def fails(self, level: str) -> bool:
        """Whether a finding of ``level`` or worse exists (for --fail-on)."""
        rank = SEVERITIES.index(level)
        return any(SEVERITIES.index(f.severity) >= rank for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "target": self.target, "rows": self.rows,
                "findings": [f.to_dict() for f in self.findings],
                "counts": {s: sum(f.severity == s for f in self.findings)
                           for s in SEVERITIES},
                "thresholds": dict(_checks.THRESHOLDS),
                "profile": self.profile, "features": self.features,
                "model": self.model, "design": self.design,
                "missingness": self.missingness, "seconds": self.seconds}


def audit_pair(train: pa.Table, test: pa.Table, *, target: str,
               task: str | None = None, time_column: str | None = None,
               group: str | None = None, allow_shared: list[str] | None = None,
               seed: int = 0, sample_rows: int = _checks.SAMPLE_ROWS
               ) -> AuditResult:
    """Run every check on a train/test pair. TEST is never used to fit anything:
    checks that fit a model work on (a seeded sample of) TRAIN alone."""
    pair = make_pair(train, test, target=target, task=task, time=time_column,
                     group=group, allow_shared=allow_shared, seed=seed)
    seconds: dict[str, float] = {}
    findings: list[Finding] = []

    def timed(name, fn, *args):
        start = time.perf_counter()
        res = fn(*args)
        seconds[name] = round(time.perf_counter() - start, 3)
        return res

    power = timed("feature_power", _checks.feature_power, pair, sample_rows)
    used = min(pair.train.num_rows, sample_rows)
    findings += timed("duplicates", _checks.duplicates, pair)
    findings += timed("text_near_duplicates", _checks.text_near_duplicates, pair)
    findings += timed("group_overlap", _checks.group_overlap, pair)
    ids = timed("id_like", _checks.id_like, pair, power)
    findings += ids
    findings += timed("undeclared_group", _checks.undeclared_group, pair,
                      {c for f in ids for c in f.columns})
    findings += timed("time", _checks.time_checks, pair)
    findings += _checks.single_feature_power(pair, power, used)
    findings += timed("target_derived", _checks.target_derived, pair, sample_rows,
                      power)
    findings += timed("outcome_signature", _checks.outcome_signature, pair, power,
                      sample_rows)
    findings += timed("preprocessing", _checks.preprocessing, pair)
    shifted, stats = timed("shift", _checks.shift, pair)
    findings += shifted
    findings += _checks.class_imbalance(pair)
    suspects = list(dict.fromkeys(
        c for f in findings if f.check in SUSPECT_CHECKS for c in f.columns
        if c != pair.time))
    missing = timed("missingness", _missing.missingness, pair)
    probe = timed("probe_model", _model.probe, pair, sample_rows, suspects)
    if probe is not None:
        findings += _model.ablation_findings(pair, probe, suspects)
    for col, score in power.items():
        stats.setdefault(col, {"kind": pair.kinds[col]})["one_feature_score"] = \
            round(score, 4)
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    findings.sort(key=lambda f: (order[f.severity], f.check, f.columns))
    return AuditResult(
        findings=findings, task=pair.task, target=target,
        rows={"train": pair.train.num_rows, "test": pair.test.num_rows,
              **{f"{k}_without_target": v for k, v in
                 pair.dropped_no_target.items()}},
        profile=profile(pair), features=stats, seconds=seconds,
        model=None if probe is None else asdict(probe),
        design=design_review(pair, probe, power), missingness=missing)


def design_review(pair: Pair, probe: _model.Probe | None,
                  power: dict[str, float]) -> dict[str, Any]:
    """The course's "should this be ML at all" questions, answered from the
    data: does a model beat the simple baselines by a margin, how many labelled
    rows each class has, and does the target drift over time."""
    out: dict[str, Any] = {}
    chance = 0.0 if pair.task == "regression" else 0.5
    best = max(power.items(), key=lambda kv: kv[1]) if power else None
    if probe is not None and probe.score is not None:
        out["probe_score"] = round(probe.score, 4)
        out["metric"] = probe.metric
        out["chance"] = chance
        if best:
            out["best_single_feature"] = {"feature": best[0],
                                          "score": round(best[1], 4)}
            out["margin_over_best_feature"] = round(probe.score - best[1], 4)
        lift = probe.score - chance
        out["verdict"] = (
            "the features carry little signal: a model barely beats chance"
            if lift < 0.05 else
            "one feature does nearly as well as the model: a rule may be enough"
            if best and probe.score - best[1] < 0.01 else
            "a model beats chance and the best single feature by a clear margin")
    if pair.task != "regression":
        counts = np.bincount(pair.y_train, minlength=len(pair.classes))
        out["labelled_rows_per_class"] = {str(c): int(n) for c, n in
                                          zip(pair.classes, counts, strict=True)}
        out["fewest_rows_per_class"] = int(counts.min())
    if pair.time:
        t = np.concatenate([pair.numbers("train", pair.time),
                            pair.numbers("test", pair.time)])
        y = np.concatenate([pair.y_train, pair.y_test]).astype(float)
        if pair.task == "multiclass":
            y = (y == np.bincount(pair.y_train).argmin()).astype(float)
        ok = np.isfinite(t) & np.isfinite(y)
        if ok.sum() >= 100:
            edges = np.quantile(t[ok], np.linspace(0, 1, 11)[1:-1])
            b = np.searchsorted(edges, t[ok], side="right")
            counts = np.bincount(b, minlength=10)
            means = np.bincount(b, weights=y[ok], minlength=10) / np.maximum(
                counts, 1)
            # tied times leave some deciles empty: their mean is no value (a 0
            # there would count as drift)
            filled = counts > 0
            out["target_by_time_decile"] = [round(float(m), 4) if f else None
                                            for m, f in zip(means, filled,
                                                            strict=True)]
            if filled.sum() >= 2:
                out["target_drift"] = round(float(means[filled].max()
                                                  - means[filled].min()), 4)
    return out


def _when(seconds: float) -> str:
    """A time (seconds since 1970, UTC) as ISO 8601 text."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def profile(pair: Pair) -> dict[str, Any]:
    """Types, missing values, distinct counts, a summary of each column, and
    the class balance (or the target's quantiles)."""
    cols = {}
    for c in pair.train.column_names:
        arr = pair.train.column(c)
        kind = pair.kinds.get(c, "target")
        doc: dict[str, Any] = {"type": str(arr.type), "kind": kind,
                               "missing": round(arr.null_count / max(len(arr), 1),
                                                4),
                               "distinct": pc.count_distinct(arr).as_py()}
        if kind in ("numeric", "time") or (c == pair.target
                                           and pair.task == "regression"):
            x = numeric(arr)
            x = x[np.isfinite(x)]
            if len(x):
                dated = pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type)
                qs = (0, 0.25, 0.5, 0.75, 1)
                doc["quantiles"] = {str(q): _when(v) if dated else float(v)
                                    for q, v in zip(qs, np.quantile(x, qs),
                                                    strict=True)}
        elif kind in ("categorical", "id"):
            top = pc.value_counts(arr.drop_null()).to_pylist()
            top.sort(key=lambda d: -d["counts"])
            doc["top"] = [[d["values"], d["counts"]] for d in top[:10]]
        cols[c] = doc
    out: dict[str, Any] = {"columns": cols}
    if pair.task != "regression":
        out["classes"] = {str(c): {"train": int(np.sum(pair.y_train == i)),
                                   "test": int(np.sum(pair.y_test == i))}
                          for i, c in enumerate(pair.classes)}
    return out


def split_table(table: pa.Table, how: str, *, target: str, test_share: float = 0.2,
                seed: int = 0) -> tuple[pa.Table, pa.Table, dict[str, str | None]]:
    """Split one table as ``--split`` says: random, stratified (by target),
    time:COL (the newest rows are test) or group:COL (whole groups to test).
    Returns train, test and what the split implies (time and group columns)."""
    kind, _, col = how.partition(":")
    if kind not in SPLITS:
        raise DataError(f"--split: unknown split {how!r}; expected random, "
                        f"stratified, time:COLUMN or group:COLUMN")
    if kind in ("time", "group") and (not col or col not in table.column_names):
        raise DataError(f"--split {how}: name a column of the data "
                        f"({', '.join(table.column_names)})")
    n = table.num_rows
    rng = np.random.default_rng(seed)
    if kind == "random":
        is_test = rng.random(n) < test_share
    elif kind == "stratified":
        c = codes_of(table.column(target))
        is_test = np.zeros(n, dtype=bool)
        for v in np.unique(c):
            idx = np.flatnonzero(c == v)
            rng.shuffle(idx)
            is_test[idx[:int(round(len(idx) * test_share))]] = True
    elif kind == "time":
        t = numeric(table.column(col))
        cut = np.nanquantile(t, 1 - test_share)
        is_test = t > cut
    else:
        import mmh3

        vals = table.column(col).to_pylist()
        is_test = np.array([(mmh3.hash(str(v), seed) % 1000) / 1000 < test_share
                            for v in vals], dtype=bool)
    mask = pa.array(is_test)
    implied = {"time": col if kind == "time" else None,
               "group": col if kind == "group" else None}
    return (table.filter(pc.invert(mask)), table.filter(mask), implied)


MAX_AUDITED_LABELS = 10
"""A multilabel target: the labels audited one by one (the most frequent)."""


def audit_labels(train: pa.Table, test: pa.Table, *, target: str,
                 separator: str = "|", **kwargs: Any) -> AuditResult:
    """The audit of a multilabel target: :func:`audit_pair` of each label's
    indicator (does the row have it?) as a binary target, for the
    ``MAX_AUDITED_LABELS`` most frequent labels (the others listed in
    ``design.labels``). A finding every label's audit makes (duplicates, a
    time problem, shift: nothing of the target) is kept once; one that
    depends on the label names it. Rows, profile, features and probe model
    are the most frequent label's."""
    from collections import Counter

    from ..trainingdata import parse_labels

    sets = {id(t): [parse_labels(v, separator) for v in
                    t.column(target).to_pylist()] for t in (train, test)}

    def indicator(table: pa.Table, label: str) -> pa.Table:
        col = pa.array([None if s is None else label in s for s in sets[id(table)]],
                       pa.bool_())
        return table.set_column(table.column_names.index(target), target, col)

    counts = Counter(lb for s in sets[id(train)] for lb in (s or []))
    ranked = [lb for lb, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    audited, left = ranked[:MAX_AUDITED_LABELS], ranked[MAX_AUDITED_LABELS:]
    if not audited:
        raise DataError(f"the multilabel target {target!r} has no label in the "
                        f"train rows (read as JSON lists or joined by "
                        f"{separator!r})")
    results = {}
    for lb in audited:
        tr = indicator(train, lb)
        if not pc.any(tr.column(target)).as_py() or pc.all(
                pc.fill_null(tr.column(target), True)).as_py():
            continue  # one class only in train: nothing of this label to audit
        results[lb] = audit_pair(tr, indicator(test, lb), target=target,
                                 task="binary", **kwargs)
    if not results:
        raise DataError(f"the multilabel target {target!r}: every label is on all "
                        f"train rows or on none; nothing to audit")
    seen: Counter = Counter((f.check, tuple(f.columns), f.message)
                            for r in results.values() for f in r.findings)
    findings: list[Finding] = []
    shared: set = set()
    for lb, r in results.items():
        for f in r.findings:
            key = (f.check, tuple(f.columns), f.message)
            if seen[key] == len(results):  # the same for every label
                if key not in shared:
                    shared.add(key)
                    findings.append(f)
                continue
            findings.append(Finding(check=f.check, severity=f.severity,
                                    columns=f.columns,
                                    message=f"label {lb!r}: {f.message}",
                                    evidence={**f.evidence, "label": lb}))
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    findings.sort(key=lambda f: (order[f.severity], f.check, f.columns))
    first = next(iter(results.values()))
    seconds: dict[str, float] = {}
    for r in results.values():
        for k, v in r.seconds.items():
            seconds[k] = round(seconds.get(k, 0.0) + v, 3)
    design = {**first.design, "labels": {
        "audited": list(results), "not_audited": left,
        "one_class": [lb for lb in audited if lb not in results],
        "probe_auc": {lb: (r.model or {}).get("score") for lb, r in results.items()},
        "findings": {lb: len(r.findings) for lb, r in results.items()}}}
    return AuditResult(findings=findings, task="multilabel", target=target,
                       rows=first.rows, profile=first.profile,
                       features=first.features, seconds=seconds, model=first.model,
                       design=design, missingness=first.missingness)
