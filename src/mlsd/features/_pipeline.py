"""The feature pipeline: the spec's features, analysed together, applied together."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import ibis
import pyarrow as pa
import scipy.sparse as sp

from ..errors import MlsdError, NotFittedError
from ..spec import FeatureSpec
from ._transforms import (
    TRANSFORMS,
    HashedNgramsFeature,
    HashingFeature,
    NumericFeature,
    OneHotFeature,
    TimeFeature,
    Transform,
)

STATE_VERSION = 1


def transform_for(spec: FeatureSpec) -> Transform:
    """Build the transform a feature spec asks for."""
    kind = spec.kind
    if kind == "numeric":
        return NumericFeature(column=spec.column, impute=spec.impute,
                              scale=spec.scale,
                              missing_indicator=spec.missing_indicator)
    if kind == "onehot":
        return OneHotFeature(column=spec.column, max_categories=spec.max_categories,
                             min_frequency=spec.min_frequency)
    if kind == "hashing":
        return HashingFeature(column=spec.column, buckets=spec.buckets,
                              seed=spec.seed)
    if kind == "hashed_ngrams":
        return HashedNgramsFeature(column=spec.column, buckets=spec.buckets,
                                   ngram_range=spec.ngram_range)
    return TimeFeature(column=spec.column, parts=tuple(spec.encode))


class FeaturePipeline:
    """Turns typed rows into the model's input matrix, the same way everywhere.

    Parameters
    ----------
    transforms : sequence of Transform
        One per feature, applied in order; their blocks are stacked side by side.

    Examples
    --------
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
        return list(dict.fromkeys(t.column for t in self.transforms))

    def analyze(self, engine, table: ibis.Table) -> FeaturePipeline:
        """Learn every transform's state from the training rows only."""
        for t in self.transforms:
            t.analyze(engine, table)
        self.state_ = [t.to_dict() for t in self.transforms]
        return self

    def apply(self, table: pa.Table | pa.RecordBatch) -> sp.csr_matrix:
        """The input matrix (rows x features) for an Arrow table of typed rows."""
        if not hasattr(self, "state_"):
            raise NotFittedError("FeaturePipeline: call analyze() or from_json() first")
        missing = [c for c in self.columns if c not in table.schema.names]
        if missing:
            raise MlsdError(f"features: input lacks column(s) {missing}")
        blocks = [t.apply(table) for t in self.transforms]
        return sp.hstack(blocks, format="csr", dtype="float64")

    def names(self) -> list[str]:
        return [n for t in self.transforms for n in t.names()]

    def block_slices(self) -> list[tuple[str, str, int, int]]:
        """(column, kind, start, stop) of each transform's block in the matrix."""
        out, start = [], 0
        for t in self.transforms:
            stop = start + len(t.names())
            out.append((t.column, t.kind, start, stop))
            start = stop
        return out

    def to_json(self) -> str:
        """The state as canonical JSON (same state, same bytes)."""
        if not hasattr(self, "state_"):
            raise NotFittedError("FeaturePipeline: call analyze() first")
        doc = {"version": STATE_VERSION, "features": self.state_}
        return json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"

    def digest(self) -> str:
        """The sha256 of the state: equal digests, equal outputs."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> FeaturePipeline:
        doc: dict[str, Any] = json.loads(text)
        if doc.get("version") != STATE_VERSION:
            raise MlsdError(
                f"feature state version {doc.get('version')!r} is not supported "
                f"(expected {STATE_VERSION})")
        transforms = []
        for i, f in enumerate(doc["features"]):
            try:
                t = TRANSFORMS[f["kind"]](column=f["column"], **f["params"])
            except (KeyError, TypeError) as err:
                raise MlsdError(f"feature state features[{i}] is invalid: {err}"
                                ) from err
            t.state_ = f["state"]
            transforms.append(t)
        pipe = cls(transforms=transforms)
        pipe.state_ = [t.to_dict() for t in transforms]
        return pipe
