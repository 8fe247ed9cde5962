"""The registry of feature transforms: one class a kind of ``encode``."""

from __future__ import annotations

from ._base import MISSING, OTHER, Transform
from ._categorical import (
    CrossFeature,
    FrequencyFeature,
    HashingFeature,
    OneHotFeature,
    OrdinalFeature,
    TargetFeature,
)
from ._numeric import (
    BinsFeature,
    FourierFeature,
    NumericFeature,
    PeriodicFeature,
    TimeFeature,
)
from ._text import EmbeddingFeature, HashedNgramsFeature, TfidfFeature

TRANSFORMS: dict[str, type[Transform]] = {
    t.kind: t for t in (NumericFeature, OneHotFeature, HashingFeature,
                        HashedNgramsFeature, TimeFeature, BinsFeature,
                        OrdinalFeature, FrequencyFeature, TargetFeature,
                        CrossFeature, FourierFeature, PeriodicFeature,
                        TfidfFeature, EmbeddingFeature)
}

__all__ = ["MISSING", "OTHER", "TRANSFORMS", "BinsFeature", "CrossFeature",
           "EmbeddingFeature",
           "FourierFeature", "FrequencyFeature", "HashedNgramsFeature",
           "HashingFeature", "NumericFeature", "OneHotFeature", "OrdinalFeature",
           "PeriodicFeature", "TargetFeature", "TfidfFeature", "TimeFeature",
           "Transform"]
