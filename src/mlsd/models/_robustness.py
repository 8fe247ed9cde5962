"""The robustness check: small, label-preserving perturbations of test rows,
and how often the model's predictions change.

Numbers get Gaussian noise (a share of each column's spread on the train
split, within its range), the text column EDA's swaps and deletions (and
synonyms when asked); the label of a post does not change because two of its
words swap. A model whose decision flips on many such rows leans on detail it
should not: the report shows the flip rate next to the test metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..features import FeaturePipeline
    from ..spec import RobustnessSpec
    from ._learners import Learner

TEXT_KINDS = ("hashed_ngrams", "tfidf")
NUMBER_KINDS = ("numeric", "bins", "fourier", "periodic", "cross")


def decisions(task: str, scores: np.ndarray, threshold: Any
              ) -> np.ndarray:
    import numpy as np

    if task == "binary":
        return scores >= (0.5 if threshold is None else threshold)
    if task == "multiclass":
        return np.argmax(scores, axis=1)
    if task == "multilabel":  # a row's set of labels
        return scores >= (0.5 if threshold is None else np.asarray(threshold))
    return scores


def perturbed_rows(n: int, rows: int, seed: int) -> np.ndarray | None:
    """The positions (sorted) of the test rows the check perturbs, a seeded
    choice of ``rows`` of the ``n``; None: all of them."""
    import numpy as np

    if n <= rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))


def robustness(learner: Learner, pipeline: FeaturePipeline, test: pa.Table,
               train: pa.Table, spec: RobustnessSpec, *, task: str, target: str,
               threshold: Any, seed: int, root: Any = None
               ) -> dict[str, Any] | None:
    """Perturb up to ``spec.rows`` test rows (a seeded choice) and compare the
    model's decisions before and after: the flip rate (classification), the
    mean change of the positive score (binary), the median change in units of
    the target's spread (regression)."""
    import numpy as np
    import pyarrow as pa

    from ..trainingdata import perturb, thesaurus_for

    if test.num_rows == 0:
        return None
    chosen = perturbed_rows(test.num_rows, spec.rows, seed)
    if chosen is not None:
        test = test.take(pa.array(chosen))
    numbers = sorted({c for t in pipeline.transforms if t.kind in NUMBER_KINDS
                      for c in t.inputs if c in test.column_names
                      and (pa.types.is_integer(test.schema.field(c).type)
                           or pa.types.is_floating(test.schema.field(c).type))})
    texts = [c for t in pipeline.transforms if t.kind in TEXT_KINDS
             for c in t.inputs if c in test.column_names]
    ops = {"synonyms": spec.synonyms, "swap": spec.swap, "delete": spec.delete}
    text = texts[0] if texts and any(ops.values()) else None
    if not numbers and text is None:
        return None
    thesaurus = thesaurus_for(spec.thesaurus, root) if text and spec.synonyms \
        else None
    changed = perturb(test, noise=spec.noise if numbers else 0.0,
                      noise_columns=numbers or None, reference=train,
                      text_column=text, text_ops=ops if text else None,
                      thesaurus=thesaurus, seed=seed)
    before = learner.predict(pipeline.apply(test))
    after = learner.predict(pipeline.apply(changed))
    out: dict[str, Any] = {"rows": int(test.num_rows), "noise": spec.noise,
                           "numbers": numbers, "text": text,
                           "text_ops": ops if text else None}
    if task == "regression":
        y = np.asarray(train.column(target).to_numpy(zero_copy_only=False),
                       dtype=float)
        spread = float(np.nanstd(y))
        out["median_change"] = round(float(np.median(np.abs(after - before)))
                                     / (spread or 1.0), 4)
        return out
    flips = decisions(task, before, threshold) != decisions(task, after, threshold)
    if task == "multilabel":  # a row flips when any of its labels does
        out["label_flip_rate"] = round(float(np.mean(flips)), 4)
        flips = flips.any(axis=1)
    out["flip_rate"] = round(float(np.mean(flips)), 4)
    out["flipped"] = int(flips.sum())
    if task in ("binary", "multilabel"):
        out["mean_score_change"] = round(float(np.mean(np.abs(after - before))), 4)
    return out
