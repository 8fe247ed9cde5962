"""The feature pipeline: the spec's features, analysed together, applied together."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import ibis
import pyarrow as pa
import scipy.sparse as sp

from ..errors import MlsdError, NotFittedError
from ..spec import FeatureSpec
from ._base import Target, Transform
from ._transforms import TRANSFORMS

STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: one column a feature, same state keys
BUNDLE = "encoders"  # an artifact's copies of encoder folders, by content hash


class Block(NamedTuple):
    """Where one feature's inputs sit in the matrix, and what it reads."""

    column: str  # the feature's label: its column, or its columns joined by *
    kind: str
    start: int
    stop: int
    inputs: tuple[str, ...]


def feature_labels(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Each feature's name in reports, from its (label, kind): the label, or,
    when several features read the same column(s), ``label:kind`` (tfidf and
    embedding of one text column), numbered if still the same."""
    seen: dict[str, int] = {}
    for label, _ in pairs:
        seen[label] = seen.get(label, 0) + 1
    out: list[str] = []
    for label, kind in pairs:
        name = label if seen[label] == 1 else f"{label}:{kind}"
        while name in out:
            name += "'"
        out.append(name)
    return out


def transform_for(spec: FeatureSpec, root: Path | None = None) -> Transform:
    """Build the transform a feature spec asks for (the settings it gives; the
    transform's defaults for the rest); a file it reads (an embedding's
    vectors) is found under ``root``, the project."""
    kind = spec.kind
    settings = spec.settings()
    if "vectors" in settings and root is not None:
        from ..lake._paths import inside

        settings["vectors"] = str(inside(Path(root), *Path(
            settings["vectors"]).parts))
        t = TRANSFORMS[kind](column=spec.column, **settings)
        t.cache_dir = str(Path(root) / ".mlsd" / "cache" / "embeddings")
        return t
    if kind == "time":
        return TRANSFORMS["time"](column=spec.column, parts=tuple(spec.encode))
    if "ngram_range" in settings:
        settings["ngram_range"] = tuple(settings["ngram_range"])
    if kind in ("cross", "fourier"):
        return TRANSFORMS[kind](columns=list(spec.columns), **settings)
    # a stream feature is a number read from the column its window adds
    column = spec.label if spec.agg is not None else spec.column
    return TRANSFORMS[kind](column=column, **settings)


class FeaturePipeline:
    """Turns typed rows into the model's input matrix, the same way everywhere.

    Parameters
    ----------
    transforms : sequence of Transform
        One per feature, applied in order; their blocks are stacked side by side.

    Examples
    --------
    >>> from mlsd.features import NumericFeature
    >>> pipe = FeaturePipeline(transforms=[NumericFeature(column="x")])
    >>> # pipe.analyze(engine, train_table); X = pipe.apply(arrow_table)
    """

    def __init__(self, *, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    @classmethod
    def from_spec(cls, features: Sequence[FeatureSpec]) -> FeaturePipeline:
        return cls(transforms=[transform_for(f) for f in features])

    @property
    def columns(self) -> list[str]:
        """The raw columns the pipeline reads."""
        return list(dict.fromkeys(c for t in self.transforms for c in t.inputs))

    @property
    def supervised(self) -> bool:
        """Whether a transform learns from the label (target encoding)."""
        return any(t.supervised for t in self.transforms)

    @property
    def has_training_state(self) -> bool:
        """Whether supervised transforms hold the out-of-fold statistics of the
        rows they were analysed on (not saved: true only in that process)."""
        return all(hasattr(t, "folds_") for t in self.transforms if t.supervised)

    def analyze(self, engine, table: ibis.Table, *, target: Target | None = None
                ) -> FeaturePipeline:
        """Learn every transform's state from the training rows only; ``target``
        names the label for supervised transforms."""
        from ._numeric import numeric_summaries

        wanted: dict[tuple[str, int], None] = {}
        for t in self.transforms:
            wanted |= dict.fromkeys(t.summaries_wanted().items())
        known: dict[tuple[str, int], dict] = {}
        by_quantiles: dict[int, dict[str, int]] = {}
        for col, q in wanted:  # one scan for every column (per quantile count)
            by_quantiles.setdefault(q, {})[col] = q
        for cols in by_quantiles.values():
            for col, s in numeric_summaries(engine, table, cols).items():
                known[(col, cols[col])] = s
        for t in self.transforms:
            t.analyze(engine, table, target=target, known=known)
        self.state_ = [t.to_dict() for t in self.transforms]
        self.__dict__.pop("_plan", None)
        return self

    def _check(self, names) -> None:
        if not hasattr(self, "state_"):
            raise NotFittedError("FeaturePipeline: call analyze() or from_json() first")
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise MlsdError(f"features: input lacks column(s) {missing}")

    def apply(self, table: pa.Table | pa.RecordBatch, *, training: bool = False
              ) -> sp.csr_matrix:
        """The input matrix (rows x features) for an Arrow table of typed rows.

        ``training=True`` only for the very rows the pipeline was analysed on:
        target encoding then gives each its out-of-fold value.
        """
        self._check(table.schema.names)
        blocks = [t.apply(table, training=training) for t in self.transforms]
        return sp.hstack(blocks, format="csr", dtype="float64")

    def _steps(self):
        plan = self.__dict__.get("_plan")
        if plan is None or plan[0] is not self.state_:
            steps, offset = [], 0
            for t in self.transforms:
                steps.append((t.row_function(), tuple(t.inputs), offset))
                offset += len(t.names())
            plan = self._plan = (self.state_, steps, offset, frozenset(self.columns))
        return plan

    def entries(self, row: Mapping[str, Any]) -> tuple[list[int], list[float], int]:
        """The input vector of one row of raw values as sparse entries
        (column indices, values) and its width: :meth:`apply` of that row,
        without building a table or a matrix (the online serving path)."""
        if not hasattr(self, "state_"):
            raise NotFittedError("FeaturePipeline: call analyze() or from_json() first")
        _, steps, width, needed = self._steps()
        if not needed <= row.keys():
            raise MlsdError(f"features: input lacks column(s) "
                            f"{sorted(needed - row.keys())}")
        idx: list[int] = []
        vals: list[float] = []
        for fn, inputs, offset in steps:
            if len(inputs) == 1:
                i, v = fn(row[inputs[0]])
            else:
                i, v = fn(*[row[c] for c in inputs])
            if len(i) == 1:
                idx.append(offset + i[0])
            else:
                idx += [offset + j for j in i]
            vals += v
        return idx, vals, width

    def apply_one(self, row: Mapping[str, Any]) -> sp.csr_matrix:
        """The input vector (1 x features CSR) of one row of raw values, as
        :meth:`apply` gives it for that row (see :meth:`entries`)."""
        idx, vals, width = self.entries(row)
        return sp.csr_matrix((vals, idx, [0, len(idx)]), shape=(1, width))

    def names(self) -> list[str]:
        """Names of the model inputs, in matrix order."""
        return [n for t in self.transforms for n in t.names()]

    def labels(self) -> list[str]:
        """Each feature's name in reports (see :func:`feature_labels`)."""
        return feature_labels([(t.label, t.kind) for t in self.transforms])

    def block_slices(self) -> list[Block]:
        """Each feature's block in the matrix: its label, kind, start, stop and
        the raw columns it reads."""
        out, start = [], 0
        for t, label in zip(self.transforms, self.labels(), strict=True):
            stop = start + len(t.names())
            out.append(Block(label, t.kind, start, stop, tuple(t.inputs)))
            start = stop
        return out

    def notes(self) -> dict[str, dict[str, Any]]:
        """What each feature's analysis found worth showing (collision rates,
        vocabulary sizes), by feature label."""
        return {label: n for t, label in zip(self.transforms, self.labels(),
                                             strict=True) if (n := t.notes())}

    def to_json(self) -> str:
        """The state as canonical JSON (same state, same bytes)."""
        if not hasattr(self, "state_"):
            raise NotFittedError("FeaturePipeline: call analyze() first")
        doc = {"version": STATE_VERSION, "features": self.state_}
        return json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"

    def digest(self) -> str:
        """The sha256 of the state: equal digests, equal outputs."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def bundles(self) -> list[tuple[str, str, list[str]]]:
        """The encoder folders an artifact must carry (content hash, source
        folder, file names): each once."""
        out: dict[str, tuple[str, str, list[str]]] = {}
        for t in self.transforms:
            b = getattr(t, "bundle", lambda: None)()
            if b is not None:
                out.setdefault(b[0], b)
        return list(out.values())

    @classmethod
    def from_json(cls, text: str, folder: Path | None = None) -> FeaturePipeline:
        """The pipeline of a saved state; ``folder``, an artifact's, holds the
        copies of the encoder folders it was saved with (``BUNDLE/HASH``)."""
        doc: dict[str, Any] = json.loads(text)
        if doc.get("version") not in READABLE_VERSIONS:
            raise MlsdError(
                f"feature state version {doc.get('version')!r} is not supported "
                f"(expected one of {READABLE_VERSIONS})")
        transforms = []
        for i, f in enumerate(doc["features"]):
            try:
                where = ({"columns": f["columns"]} if "columns" in f
                         else {"column": f["column"]})
                t = TRANSFORMS[f["kind"]](**where, **f["params"])
            except (KeyError, TypeError) as err:
                raise MlsdError(f"feature state features[{i}] is invalid: {err}"
                                ) from err
            t.state_ = f["state"]
            if folder is not None and isinstance(t.state_, dict) and \
                    "encoder" in t.state_:
                t.home = str(Path(folder) / BUNDLE / t.state_["sha256"][:16])
            transforms.append(t)
        pipe = cls(transforms=transforms)
        pipe.state_ = [t.to_dict() for t in transforms]
        return pipe
