"""Class imbalance: see it, weigh it, resample it.

* :func:`class_balance`: counts, shares and the majority/minority ratio of the
  training labels, and whether the task is imbalanced (the rarest class below
  ``IMBALANCED_SHARE`` of what an even split would give it).
* :func:`class_weights_for`: per-row weights from the spec's ``class_weight``:
  ``balanced`` (``n / (k n_c)``), ``effective`` (the class-balanced loss of Cui
  et al. 2019, ``(1 - beta) / (1 - beta^n_c)``), or a weight per class; and
  :func:`cost_weights` from a binary cost matrix (a positive weighs what
  missing it costs, a negative what a false alarm costs).
* :func:`resample`: imbalanced-learn's samplers on the training feature matrix
  only. Its input is a :class:`TrainRows`, which can be made from the train
  split alone: validation and test rows cannot reach a sampler.

Every resampled row keeps where it came from (``origin``: the training row it
copies, or -1 for a synthetic row), so the rows a model saw can be told from the
rows of the lake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DataError, SpecError

if TYPE_CHECKING:
    import numpy as np

TRAIN = "train"
IMBALANCED_SHARE = 0.2
"""A task is imbalanced when its rarest class holds less than this share of
what an even split would give it (10% of the rows of a binary task)."""
RESAMPLERS = ("none", "random_under", "tomek", "random_over", "smote",
              "smote_tomek", "smotenc")
RAW_RESAMPLERS = ("smotenc",)
"""Resamplers that make raw rows (then applied by the feature pipeline)."""


def class_balance(y: np.ndarray, classes: list) -> dict[str, Any]:
    """Counts, shares and ratio of the encoded labels ``y`` (0..k-1)."""
    import numpy as np

    k = max(len(classes), 2)
    counts = np.bincount(np.asarray(y, dtype=int), minlength=k)
    total = max(int(counts.sum()), 1)
    low, high = int(np.argmin(counts)), int(np.argmax(counts))
    share = counts[low] / total
    return {"counts": {str(c): int(n) for c, n in zip(classes, counts, strict=True)},
            "shares": {str(c): round(n / total, 4)
                       for c, n in zip(classes, counts, strict=True)},
            "minority": str(classes[low]), "majority": str(classes[high]),
            "ratio": round(float(counts[high] / max(counts[low], 1)), 2),
            "imbalanced": bool(share < IMBALANCED_SHARE * 2 / k)}


def class_weights_for(y: np.ndarray, n_classes: int, how: Any, classes: list,
                      beta: float = 0.999) -> np.ndarray | None:
    """Per-row weights, of mean 1, by ``how``: ``balanced``, ``effective``,
    a mapping class -> weight, or ``none`` (None)."""
    import numpy as np

    y = np.asarray(y, dtype=int)
    k = max(n_classes, 2)
    counts = np.bincount(y, minlength=k).astype(float)
    if how in (None, "none"):
        return None
    if how == "balanced":
        per = len(y) / (k * np.maximum(counts, 1.0))
    elif how == "effective":
        per = (1.0 - beta) / (1.0 - np.power(beta, np.maximum(counts, 1.0)))
    elif isinstance(how, dict):
        names = {str(c): i for i, c in enumerate(classes)}
        unknown = [c for c in how if str(c) not in names]
        if unknown:
            raise SpecError(f"model.class_weight: {unknown[0]!r} is not a class of "
                            f"the target (classes: {', '.join(names)})")
        per = np.ones(k)
        for c, w in how.items():
            per[names[str(c)]] = float(w)
    else:
        raise SpecError(f"model.class_weight: {how!r} is not balanced, effective, "
                        f"none or a weight per class")
    w = per[y]
    return w * (len(w) / w.sum()) if w.sum() > 0 else w


def cost_weights(y: np.ndarray, costs: dict[str, float]) -> np.ndarray:
    """Binary rows weighted by what an error on them costs: a positive by the
    cost of a false negative less a true positive's, a negative by a false
    positive's less a true negative's (mean 1)."""
    import numpy as np

    pos = costs.get("fn", 1.0) - costs.get("tp", 0.0)
    neg = costs.get("fp", 1.0) - costs.get("tn", 0.0)
    if pos <= 0 or neg <= 0:
        raise SpecError("problem.costs: to weigh the loss, a false negative must "
                        "cost more than a true positive and a false positive more "
                        "than a true negative")
    w = np.where(np.asarray(y, dtype=int) == 1, pos, neg).astype(float)
    return w * (len(w) / w.sum())


@dataclass(frozen=True)
class TrainRows:
    """The training feature matrix and labels, the only input a resampler
    takes. ``split`` must be ``train``: a resampler cannot be handed validation
    or test rows, however it is called."""

    X: Any
    y: np.ndarray
    split: str = TRAIN

    def __post_init__(self) -> None:
        if self.split != TRAIN:
            raise DataError(f"resampling takes the train split only, not "
                            f"{self.split!r}: validation and test rows are never "
                            f"resampled")
        if self.X.shape[0] != len(self.y):
            raise DataError(f"resampling: {self.X.shape[0]} rows but {len(self.y)} "
                            f"labels")


@dataclass(frozen=True)
class Resampled:
    """Rows after resampling: ``origin[i]`` is the training row that row ``i``
    copies, or -1 for a synthetic row."""

    X: Any
    y: np.ndarray
    origin: np.ndarray
    method: str

    def summary(self, classes: list) -> dict[str, Any]:
        import numpy as np

        k = max(len(classes), 2)
        return {"method": self.method, "rows": int(len(self.y)),
                "synthetic": int((self.origin < 0).sum()),
                "repeated": int(len(self.origin[self.origin >= 0])
                                - len(np.unique(self.origin[self.origin >= 0]))),
                "counts": {str(c): int(n) for c, n in zip(
                    classes, np.bincount(self.y.astype(int), minlength=k),
                    strict=False)}}


def _strategy(ratio: float | None, n_classes: int) -> Any:
    if ratio is None or n_classes > 2:
        return "auto"
    return float(ratio)


def resample(rows: TrainRows, method: str, *, seed: int, ratio: float | None = None,
             k_neighbors: int = 5) -> Resampled:
    """Resample the training rows with imbalanced-learn.

    ``method``: ``random_under`` (RandomUnderSampler), ``tomek`` (TomekLinks:
    the majority member of every pair of opposite-class nearest neighbours is
    removed), ``random_over`` (RandomOverSampler), ``smote`` (SMOTE),
    ``smote_tomek`` (SMOTE, then Tomek links), ``none``. ``ratio``: for a
    binary task, the minority/majority ratio after resampling (default 1).
    """
    import numpy as np

    if not isinstance(rows, TrainRows):
        raise DataError("resample takes TrainRows (made from the train split)")
    X, y = rows.X, np.asarray(rows.y)
    n = len(y)
    if method == "none":
        return Resampled(X, y, np.arange(n), method)
    if method in RAW_RESAMPLERS:
        raise SpecError(f"{method} works on raw rows: call smotenc_rows")
    if method not in RESAMPLERS:
        raise SpecError(f"imbalance.resample: unknown method {method!r}; expected "
                        f"one of {', '.join(RESAMPLERS)}")
    k = len(np.unique(y))
    if k < 2:
        raise DataError("resampling needs at least two classes in the train split")
    strategy = _strategy(ratio, k)
    smallest = int(np.bincount(y.astype(int)).astype(float)[
        np.bincount(y.astype(int)) > 0].min())
    if method in ("smote", "smote_tomek") and smallest <= 1:
        raise DataError("SMOTE needs at least 2 rows of every class in the train "
                        "split to interpolate between")
    neighbours = max(1, min(k_neighbors, smallest - 1))
    if method == "random_under":
        from imblearn.under_sampling import RandomUnderSampler

        s = RandomUnderSampler(sampling_strategy=strategy, random_state=seed)
        Xr, yr = s.fit_resample(X, y)
        return Resampled(Xr, yr, np.asarray(s.sample_indices_), method)
    if method == "random_over":
        from imblearn.over_sampling import RandomOverSampler

        s = RandomOverSampler(sampling_strategy=strategy, random_state=seed)
        Xr, yr = s.fit_resample(X, y)
        return Resampled(Xr, yr, np.asarray(s.sample_indices_), method)
    if method == "tomek":
        return _tomek(X, y, np.arange(n), method)
    from imblearn.over_sampling import SMOTE

    s = SMOTE(sampling_strategy=strategy, k_neighbors=neighbours, random_state=seed)
    Xr, yr = s.fit_resample(X, y)
    # SMOTE appends its synthetic rows after the originals
    origin = np.concatenate([np.arange(n), np.full(len(yr) - n, -1)])
    if method == "smote":
        return Resampled(Xr, yr, origin, method)
    return _tomek(Xr, yr, origin, method)


def _tomek(X, y, origin: np.ndarray, method: str) -> Resampled:
    import numpy as np
    from imblearn.under_sampling import TomekLinks

    s = TomekLinks()
    Xr, yr = s.fit_resample(X, y)
    return Resampled(Xr, yr, origin[np.asarray(s.sample_indices_)], method)


def smotenc_rows(rows: Any, *, columns: list[str], target: str, classes: list,
                 seed: int, ratio: float | None = None, k_neighbors: int = 5
                 ) -> Any:
    """SMOTENC on the raw training rows: synthetic minority rows whose numbers
    are interpolated between neighbours and whose categories are the most
    common among them (Chawla et al. 2002), ready for the feature pipeline's
    ``apply``. ``columns`` are the features' inputs: numbers (timestamps as
    microseconds) and categories (text, booleans). Missing numbers are filled
    with the column's median for the interpolation (synthetic rows have none);
    a missing category is a category of its own."""
    import numpy as np
    import pyarrow as pa
    from imblearn.over_sampling import SMOTENC

    from ._augment import TrainTable

    if not isinstance(rows, TrainTable):
        raise DataError("smotenc_rows takes TrainTable (made from the train split)")
    table = rows.table
    missing_token = "\x00missing"
    kinds: dict[str, str] = {}
    for c in columns:
        t = table.schema.field(c).type
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            kinds[c] = "number"
        elif pa.types.is_timestamp(t):
            kinds[c] = "time"
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or \
                pa.types.is_boolean(t) or pa.types.is_dictionary(t):
            kinds[c] = "category"
        else:
            raise SpecError(f"imbalance.resample: smotenc cannot interpolate "
                            f"{c!r} ({t}); use smote, on the feature matrix")
    cats = [c for c, k in kinds.items() if k == "category"]
    if not cats or len(cats) == len(kinds):
        raise SpecError("imbalance.resample: smotenc needs numeric and categorical "
                        "inputs (the features read "
                        + ("no category" if not cats else "no number")
                        + "); use smote")
    import pandas as pd

    frame = pd.DataFrame(index=range(table.num_rows))
    for c, k in kinds.items():
        col = table.column(c)
        if k == "category":
            frame[c] = [missing_token if v is None else str(v) for v in
                        col.to_pylist()]
        else:
            if k == "time":
                col = col.cast(pa.timestamp("us", col.type.tz)).cast(pa.int64())
            x = np.asarray(col.to_numpy(zero_copy_only=False), dtype=float)
            frame[c] = np.where(np.isnan(x), np.nanmedian(x) if (~np.isnan(
                x)).any() else 0.0, x)
    index = {str(v): i for i, v in enumerate(classes)}
    labels = table.column(target).to_pylist()
    y = np.array([index.get(str(v), -1) for v in labels])
    keep = y >= 0
    frame, y = frame[keep].reset_index(drop=True), y[keep]
    counts = np.bincount(y, minlength=len(classes))
    smallest = int(counts[counts > 0].min())
    if smallest <= 1:
        raise DataError("SMOTENC needs at least 2 rows of every class in the "
                        "train split")
    s = SMOTENC(categorical_features=cats, random_state=seed,
                sampling_strategy=_strategy(ratio, int((counts > 0).sum())),
                k_neighbors=max(1, min(k_neighbors, smallest - 1)))
    Xr, yr = s.fit_resample(frame, y)
    new = Xr.iloc[len(y):]
    arrays = {}
    for c, k in kinds.items():
        t = table.schema.field(c).type
        if k == "category":
            values = [None if v == missing_token else v for v in new[c].tolist()]
            if pa.types.is_boolean(t):
                values = [None if v is None else v == "True" for v in values]
            arrays[c] = pa.array(values, t if not pa.types.is_dictionary(t)
                                 else pa.string())
        elif k == "time":
            arrays[c] = pa.array(np.round(new[c].to_numpy()).astype(np.int64)
                                 ).cast(pa.timestamp("us", t.tz)).cast(t)
        elif pa.types.is_integer(t):
            arrays[c] = pa.array(np.round(new[c].to_numpy())).cast(t)
        else:
            arrays[c] = pa.array(new[c].to_numpy(), t)
    arrays[target] = pa.array([classes[i] for i in yr[len(y):]],
                              table.schema.field(target).type)
    return pa.table(arrays)
