"""Leakage checks between splits: exact duplicates and shared entities."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import mmh3
import numpy as np
import pyarrow as pa

SEVERITIES = ("low", "medium", "high")
PAIRS = (("train", "test"), ("train", "valid"), ("valid", "test"))


@dataclass
class Finding:
    """One audit result, with numbers a reader can check."""

    check: str
    severity: str
    columns: list[str]
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    cols = [table.column(c).to_pylist() for c in columns]
    out = np.empty(table.num_rows, dtype=np.int64)
    for i, row in enumerate(zip(*cols, strict=True)):
        out[i] = mmh3.hash64(repr(row).encode(), 0)[0]
    return out


def duplicates_across_splits(table: pa.Table, splits: np.ndarray,
                             columns: list[str], key: str | None = None
                             ) -> Finding | None:
    """Rows identical on ``columns`` (what the model sees) in two splits.

    A test row that also sits in train is scored on memory, not on
    generalisation: the test metric is inflated.
    """
    if not columns or table.num_rows == 0:
        return None
    h = _row_hashes(table, columns)
    by_split = {s: set(h[splits == s].tolist()) for s in ("train", "valid", "test")}
    counts, examples = {}, []
    keys = table.column(key).to_pylist() if key else None
    for a, b in PAIRS:
        shared = by_split[a] & by_split[b]
        rows_b = int(np.isin(h[splits == b], list(shared)).sum()) if shared else 0
        counts[f"{b}_rows_also_in_{a}"] = rows_b
        if shared and keys is not None and len(examples) < 5:
            idx = np.flatnonzero((splits == b) & np.isin(h, list(shared)))[:5]
            examples += [keys[i] for i in idx][: 5 - len(examples)]
    total = sum(counts.values())
    if total == 0:
        return None
    in_test = counts["test_rows_also_in_train"]
    n_test = int((splits == "test").sum())
    if in_test:
        severity = "high"
        message = (f"{in_test} of {n_test} test rows are exact copies of training "
                   f"rows on the model's inputs; the test metric overstates how "
                   f"the model does on new data. Deduplicate before splitting, or "
                   f"split by a group key.")
    else:
        severity = "medium"
        where = [f"{n} {b} rows also in {a}" for (a, b) in PAIRS
                 if (n := counts[f"{b}_rows_also_in_{a}"])]
        message = (f"No test row copies a training row, but {', '.join(where)} "
                   f"(exact copies on the model's inputs): the threshold and the "
                   f"model choice are made on rows the model has seen, so they "
                   f"look better on validation than they will be. Deduplicate "
                   f"before splitting, or split by a group key.")
    return Finding(
        check="duplicates_across_splits", severity=severity, columns=columns,
        message=message,
        evidence={**counts, "test_rows": n_test, "rows_used": table.num_rows,
                  "example_keys": examples})


def group_overlap(table: pa.Table, splits: np.ndarray, column: str, *,
                  declared_shared: bool) -> Finding | None:
    """Entities (values of ``column``) present in more than one split."""
    values = table.column(column).to_pylist()
    where: dict[Any, set] = defaultdict(set)
    for v, s in zip(values, splits.tolist(), strict=True):
        if v is not None:
            where[v].add(s)
    train = {v for v, s in where.items() if "train" in s}
    test_vals = [v for v, s in zip(values, splits.tolist(), strict=True)
                 if s == "test" and v is not None]
    shared_entities = sum(1 for v, s in where.items() if len(s) > 1)
    test_rows_seen = sum(1 for v in test_vals if v in train)
    if shared_entities == 0:
        return None
    share = test_rows_seen / max(len(test_vals), 1)
    evidence = {"entities": len(where), "entities_in_several_splits": shared_entities,
                "test_rows": len(test_vals), "test_rows_with_entity_in_train":
                test_rows_seen, "share": round(share, 4),
                "rows_used": table.num_rows}
    if declared_shared:
        return Finding(
            check="group_overlap", severity="low", columns=[column],
            message=(f"{share:.1%} of test rows share their {column} with training "
                     f"rows; {column} is declared as a shared entity "
                     f"(audit.allow_shared), so this is expected, but the test "
                     f"metric says more about known values of {column} than about "
                     f"new ones."),
            evidence=evidence)
    return Finding(
        check="group_overlap", severity="high", columns=[column],
        message=(f"{shared_entities} values of the group key {column} appear in "
                 f"more than one split ({share:.1%} of test rows); rows of one "
                 f"group are correlated, so the test metric is inflated. Split by "
                 f"this group."),
        evidence=evidence)


def audit_splits(table: pa.Table, splits: np.ndarray, *, feature_columns: list[str],
                 key: str | None = None, group: str | None = None,
                 allow_shared: list[str] | None = None) -> list[Finding]:
    """The spine's audit: duplicates across splits and group overlap."""
    findings = []
    dup = duplicates_across_splits(table, splits, feature_columns, key)
    if dup:
        findings.append(dup)
    if key:
        f = group_overlap(table, splits, key, declared_shared=False)
        if f:
            f.message = f"the row key {key} is repeated across splits: " + f.message
            findings.append(f)
    checked = {key}
    if group and group not in checked:
        f = group_overlap(table, splits, group,
                          declared_shared=group in (allow_shared or []))
        checked.add(group)
        if f:
            findings.append(f)
    for col in allow_shared or []:
        if col in checked or col not in table.column_names:
            continue
        f = group_overlap(table, splits, col, declared_shared=True)
        if f:
            findings.append(f)
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    findings.sort(key=lambda f: (order[f.severity], f.check))
    return findings
