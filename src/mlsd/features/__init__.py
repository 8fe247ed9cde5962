"""Features: declarative transforms with an ``analyze`` half and an ``apply`` half.

``analyze`` learns state (imputation values, scales, vocabularies) from the
training split only, with engine aggregates; ``apply`` is a pure function of the
state and an Arrow table, and the very same function serves batch training, batch
scoring and one-row online requests, so training and serving cannot drift apart.
:class:`FeaturePipeline` stacks the transforms and saves their state as JSON; the
:func:`features` stage of ``mlsd run`` analyses it on the train split and hands
the fitted pipeline to training.
"""

from ._pipeline import FeaturePipeline, transform_for
from ._stage import feature_matrices, features
from ._transforms import (
    MISSING,
    OTHER,
    TRANSFORMS,
    HashedNgramsFeature,
    HashingFeature,
    NumericFeature,
    OneHotFeature,
    TimeFeature,
    Transform,
)

__all__ = [
    "MISSING",
    "OTHER",
    "TRANSFORMS",
    "FeaturePipeline",
    "HashedNgramsFeature",
    "HashingFeature",
    "NumericFeature",
    "OneHotFeature",
    "TimeFeature",
    "Transform",
    "feature_matrices",
    "features",
    "transform_for",
]
