"""Data augmentation: new training rows from old ones, and perturbations that
test a model's robustness.

Raw rows (:func:`augment_rows`, on a :class:`TrainTable`): Gaussian noise on
numbers (each column's standard deviation on the train split times ``scale``,
kept within the range seen in training), and the text operations of EDA (Wei and
Zou 2019): synonym replacement (:mod:`._thesaurus`), random insertion of a
synonym, random swap and random deletion of words; and template synthesis,
rows of a given label made by filling templates' slots. Feature rows
(:func:`augment_matrix`, on :class:`TrainRows`): mixup (Zhang et al. 2018) and
SMOTE as augmentation (synthetic rows for every class).

Augmented rows exist only for the fit: they are made from the train split (the
types say so), never stored as lake rows, never in validation or test.
:func:`perturb` applies the same small, label-preserving changes to test rows,
for the robustness check (how often predictions flip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DataError, SpecError
from ._imbalance import TRAIN, TrainRows

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..spec import AugmentSpec

AUGMENTED = "_augmented"  # the method that made an augmented row


@dataclass(frozen=True)
class TrainTable:
    """Raw training rows, the only rows :func:`augment_rows` takes."""

    table: pa.Table
    split: str = TRAIN

    def __post_init__(self) -> None:
        if self.split != TRAIN:
            raise DataError(f"augmentation takes the train split only, not "
                            f"{self.split!r}: augmented rows are never evaluated")


# -- text -------------------------------------------------------------------------
class TextOps:
    """The four EDA operations on whitespace-separated words, with one
    random generator (the same seed and rows give the same text)."""

    def __init__(self, rng: np.random.Generator, thesaurus: Any = None):
        self.rng = rng
        self.thesaurus = thesaurus

    def _synonym(self, word: str) -> str | None:
        core = word.strip(".,;:!?\"'()[]")
        options = self.thesaurus.synonyms(core) if self.thesaurus and core else []
        if not options:
            return None
        pick = options[int(self.rng.integers(len(options)))]
        return word.replace(core, pick) if core != word else pick

    def synonyms(self, words: list[str], rate: float) -> list[str]:
        """Replace ``rate`` of the words (at least one) that have a synonym."""
        out = list(words)
        order = self.rng.permutation(len(words))
        n = max(1, round(rate * len(words)))
        for i in order:
            if n == 0:
                break
            s = self._synonym(words[i])
            if s is not None:
                out[i] = s
                n -= 1
        return out

    def insert(self, words: list[str], rate: float) -> list[str]:
        """Insert a synonym of a random word at a random place, ``rate`` of
        the words' count times (at least once)."""
        out = list(words)
        for _ in range(max(1, round(rate * len(words)))):
            for _ in range(10):  # a few tries for a word that has a synonym
                s = self._synonym(out[int(self.rng.integers(len(out)))]) if out \
                    else None
                if s is not None:
                    out.insert(int(self.rng.integers(len(out) + 1)), s)
                    break
        return out

    def swap(self, words: list[str], rate: float) -> list[str]:
        """Swap two random words, ``rate`` of the words' count times."""
        out = list(words)
        if len(out) < 2:
            return out
        for _ in range(max(1, round(rate * len(words)))):
            i, j = self.rng.choice(len(out), 2, replace=False)
            out[i], out[j] = out[j], out[i]
        return out

    def delete(self, words: list[str], rate: float) -> list[str]:
        """Drop each word with probability ``rate`` (one word always stays)."""
        if len(words) < 2:
            return list(words)
        keep = self.rng.random(len(words)) >= rate
        if not keep.any():
            keep[int(self.rng.integers(len(words)))] = True
        return [w for w, k in zip(words, keep, strict=True) if k]

    def apply(self, text: str | None, ops: dict[str, float]) -> str | None:
        if text is None or not text.strip():
            return text
        words = text.split()
        for name in ("synonyms", "insert", "swap", "delete"):
            rate = ops.get(name) or 0.0
            if rate > 0 and words:
                words = getattr(self, name)(words, rate)
        return " ".join(words)


def thesaurus_for(path: str | None, root: Any = None) -> Any:
    """The thesaurus of ``augment.text.thesaurus`` (a file, relative to the
    project), else WordNet."""
    from pathlib import Path

    from ._thesaurus import FileThesaurus, WordNet

    if path:
        p = Path(path)
        return FileThesaurus(p if p.is_absolute() or root is None else root / p)
    return WordNet()


# -- raw rows ---------------------------------------------------------------------
def _number_columns(table: pa.Table, wanted: list[str] | None,
                    exclude: tuple[str, ...] = ()) -> list[str]:
    import pyarrow as pa

    names = wanted or [c for c in table.column_names
                       if not c.startswith("_") and c not in exclude]
    out = []
    for c in names:
        if c not in table.column_names:
            raise SpecError(f"augment.noise.columns: {c!r} is not in the data")
        t = table.schema.field(c).type
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            out.append(c)
        elif wanted:
            raise SpecError(f"augment.noise.columns: {c!r} is {t}, not numbers")
    return out


def add_noise(table: pa.Table, columns: list[str], scale: float,
              reference: pa.Table, rng: np.random.Generator) -> pa.Table:
    """Gaussian noise of ``scale`` times each column's standard deviation in
    ``reference`` (the train split), kept within its range there; whole
    numbers stay whole; missing values stay missing."""
    import numpy as np
    import pyarrow as pa

    for c in columns:
        ref = np.asarray(reference.column(c).to_numpy(zero_copy_only=False),
                         dtype=float)
        ref = ref[~np.isnan(ref)]
        if not len(ref):
            continue
        x = np.asarray(table.column(c).to_numpy(zero_copy_only=False), dtype=float)
        sd = float(ref.std())
        y = np.clip(x + rng.normal(0.0, scale * sd if sd > 0 else 0.0, len(x)),
                    ref.min(), ref.max())
        t = table.schema.field(c).type
        if pa.types.is_integer(t):
            arr = pa.array(np.round(y), mask=np.isnan(x)).cast(t)
        else:
            arr = pa.array(y, mask=np.isnan(x), type=t)
        table = table.set_column(table.column_names.index(c), c, arr)
    return table


def perturb(table: pa.Table, *, noise: float = 0.0,
            noise_columns: list[str] | None = None, reference: pa.Table | None = None,
            text_column: str | None = None, text_ops: dict[str, float] | None = None,
            thesaurus: Any = None, seed: int = 0) -> pa.Table:
    """``table`` with small changes that should not change its labels: noise on
    its numbers and EDA operations on one text column."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    out = table
    if noise > 0:
        cols = _number_columns(table, noise_columns)
        out = add_noise(out, cols, noise, reference if reference is not None
                        else table, rng)
    if text_column and text_ops and any(text_ops.values()):
        if text_column not in out.column_names:
            raise SpecError(f"augment.text.column: {text_column!r} is not in the "
                            f"data")
        t = out.schema.field(text_column).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise SpecError(f"augment.text.column: {text_column!r} is {t}, not "
                            f"text")
        needs = any(text_ops.get(k) for k in ("synonyms", "insert"))
        ops = TextOps(rng, thesaurus if needs else None)
        texts = [ops.apply(t, text_ops) for t in out.column(text_column).to_pylist()]
        out = out.set_column(out.column_names.index(text_column), text_column,
                             pa.array(texts, out.schema.field(text_column).type))
    return out


def fill_templates(table: pa.Table, *, column: str, target: str, label: Any,
                   templates: list[str], slots: dict[str, list[str]], n: int,
                   rng: np.random.Generator) -> pa.Table:
    """``n`` rows of ``label`` whose ``column`` fills a random template's
    ``{slot}``s with random values; the other columns copy random training rows
    of that label (so they stay plausible)."""
    import re

    import numpy as np
    import pyarrow as pa

    if not templates:
        raise SpecError("augment.templates.templates: give at least one template")
    for t in templates:
        for name in re.findall(r"{(\w+)}", t):
            if not slots.get(name):
                raise SpecError(f"augment.templates: the template {t!r} has the "
                                f"slot {{{name}}}, and slots.{name} gives no value")
    labels = table.column(target).to_pylist()
    same = np.flatnonzero(np.array([v == label for v in labels], dtype=bool))
    if not len(same):
        raise SpecError(f"augment.templates.label: {label!r} is not a label of the "
                        f"training rows")
    base = table.take(pa.array(same[rng.integers(0, len(same), n)]))

    def fill(t: str) -> str:
        return re.sub(r"{(\w+)}", lambda m: slots[m.group(1)][
            int(rng.integers(len(slots[m.group(1)])))], t)

    texts = [fill(templates[int(rng.integers(len(templates)))]) for _ in range(n)]
    return base.set_column(base.column_names.index(column), column,
                           pa.array(texts, base.schema.field(column).type))


def augment_rows(rows: TrainTable, spec: AugmentSpec, *, target: str, seed: int,
                 root: Any = None) -> pa.Table | None:
    """New raw rows from the training rows, by every raw method ``spec``
    configures (noise, text, templates), each marked in ``_augmented``; None
    when it configures none."""
    import numpy as np
    import pyarrow as pa

    if not isinstance(rows, TrainTable):
        raise DataError("augment_rows takes TrainTable (made from the train split)")
    table = rows.table
    rng = np.random.default_rng(seed)
    parts: list[pa.Table] = []

    def marked(t: pa.Table, how: str) -> pa.Table:
        return t.append_column(AUGMENTED, pa.array([how] * t.num_rows, pa.string()))

    for _ in range(spec.copies):
        if spec.noise is not None:  # never on the label: it must not change
            cols = _number_columns(table, spec.noise.columns, exclude=(target,))
            if target in cols:
                raise SpecError(f"augment.noise.columns: {target!r} is the target; "
                                f"noise on it would change the labels")
            parts.append(marked(add_noise(table, cols, spec.noise.scale, table, rng),
                                "noise"))
        if spec.text is not None:
            t = spec.text
            ops = {"synonyms": t.synonyms, "insert": t.insert, "swap": t.swap,
                   "delete": t.delete}
            thes = thesaurus_for(t.thesaurus, root) if (t.synonyms or t.insert) \
                else None
            parts.append(marked(perturb(table, text_column=t.column, text_ops=ops,
                                        thesaurus=thes,
                                        seed=int(rng.integers(2**31))), "text"))
    if spec.templates is not None:
        t = spec.templates
        parts.append(marked(fill_templates(
            table, column=t.column, target=target, label=t.label,
            templates=t.templates, slots=t.slots, n=t.n, rng=rng), "templates"))
    if not parts:
        return None
    return pa.concat_tables(parts, promote_options="default")


# -- feature rows -----------------------------------------------------------------
def mixup(rows: TrainRows, *, alpha: float, n: int, task: str, n_classes: int,
          seed: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """``n`` mixed rows ``lam x_i + (1 - lam) x_j`` (``lam ~ Beta(alpha,
    alpha)``). A classifier learns the mixed label as two rows of the same
    inputs, one of each class, weighing ``lam`` and ``1 - lam`` (the same log
    loss as a soft label); a regressor, one row of the mixed target.
    Returns (X, y, weights)."""
    import numpy as np
    import scipy.sparse as sp

    if not isinstance(rows, TrainRows):
        raise DataError("mixup takes TrainRows (made from the train split)")
    rng = np.random.default_rng(seed)
    X, y = rows.X, np.asarray(rows.y)
    i = rng.integers(0, len(y), n)
    j = rng.integers(0, len(y), n)
    lam = rng.beta(alpha, alpha, n)
    if sp.issparse(X):
        mixed = (sp.diags(lam) @ X[i] + sp.diags(1 - lam) @ X[j]).tocsr()
    else:
        mixed = lam[:, None] * X[i] + (1 - lam)[:, None] * X[j]
    if task == "regression":
        return mixed, lam * y[i] + (1 - lam) * y[j], np.ones(n)
    both = sp.vstack([mixed, mixed]).tocsr() if sp.issparse(mixed) else np.vstack(
        [mixed, mixed])
    return both, np.concatenate([y[i], y[j]]), np.concatenate([lam, 1 - lam])


def smote_rows(rows: TrainRows, *, share: float, k_neighbors: int, seed: int
               ) -> tuple[Any, np.ndarray]:
    """SMOTE as augmentation: ``share`` more rows of every class (of at least
    two rows), interpolated between neighbours of that class."""
    import numpy as np
    from imblearn.over_sampling import SMOTE

    if not isinstance(rows, TrainRows):
        raise DataError("smote_rows takes TrainRows (made from the train split)")
    y = np.asarray(rows.y).astype(int)
    counts = np.bincount(y)
    target = {int(c): int(n + round(share * n)) for c, n in enumerate(counts)
              if n >= 2}
    if not target:
        return rows.X[:0], y[:0]
    smallest = min(counts[c] for c in target)
    s = SMOTE(sampling_strategy=target, random_state=seed,
              k_neighbors=max(1, min(k_neighbors, smallest - 1)))
    Xr, yr = s.fit_resample(rows.X, y)
    return Xr[len(y):], yr[len(y):]
