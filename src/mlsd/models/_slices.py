"""Metrics per slice of the test rows: does the model serve every segment?

A slice is the rows sharing a value of a column (country, new or returning
user), or the rows an SQL predicate selects. Each slice of at least
``MIN_ROWS`` rows gets the test metrics; the gap between the best and the
worst slice on the primary metric says how unevenly the model serves them
(for groups of people, a fairness gap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_ROWS = 30
MIN_POSITIVES = 5  # binary: a slice with fewer says little of its PR-AUC
MOST = 20  # slices of one column, the largest first


def slice_metrics(task: str, y: np.ndarray, out: np.ndarray,
                  threshold: float | None, groups: dict[str, np.ndarray], *,
                  primary: str, higher: bool) -> dict[str, Any]:
    """``groups``: name -> a label per test row (a column's values) or a
    boolean mask (a predicate's rows). Returns the slices' metrics and the
    gap on ``primary``."""
    from ._metrics import task_metrics

    keys = {"binary": ("pr_auc", "recall", "precision", "f1"),
            "multiclass": ("macro_f1", "accuracy"),
            "multilabel": ("micro_f1", "macro_f1", "hamming_loss")}.get(
                task, ("rmse", "mae"))
    out_rows = []
    for name, labels in groups.items():
        labels = np.asarray(labels)
        if labels.dtype == bool:
            values = [(name, labels)]
        else:
            uniq, counts = np.unique(labels.astype(str), return_counts=True)
            order = np.argsort(-counts, kind="stable")[:MOST]
            values = [(f"{name}={uniq[i]}", labels.astype(str) == uniq[i])
                      for i in order]
        for label, mask in values:
            n = int(mask.sum())
            row: dict[str, Any] = {"slice": label, "by": name, "rows": n}
            if n < MIN_ROWS:
                row["note"] = f"fewer than {MIN_ROWS} rows: not measured"
            else:
                m = task_metrics(task, y[mask], out[mask], threshold)
                row.update({k: m.get(k) for k in keys if k in m})
                if task == "binary":
                    row["positives"] = int(np.sum(y[mask] == 1))
                    if row["positives"] < MIN_POSITIVES:
                        row["few"] = (f"{row['positives']} positives: too few to "
                                      f"compare (not in the gap)")
            out_rows.append(row)
    scored = [r for r in out_rows if r.get(primary) is not None and "few" not in r]
    gap = None
    if len(scored) >= 2:
        best = max(scored, key=lambda r: r[primary] if higher else -r[primary])
        worst = min(scored, key=lambda r: r[primary] if higher else -r[primary])
        gap = {"metric": primary, "best": best["slice"], "worst": worst["slice"],
               "gap": round(abs(best[primary] - worst[primary]), 6)}
    return {"slices": out_rows, "gap": gap}
