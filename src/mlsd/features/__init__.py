"""Features: declarative transforms with an ``analyze`` half and an ``apply`` half.

``analyze`` learns state (imputation values, scales, vocabularies) from the
training split only, with engine aggregates; ``apply`` is a pure function of the
state and an Arrow table, and the very same function serves batch training, batch
scoring and one-row online requests, so training and serving cannot drift apart.
:class:`FeaturePipeline` stacks the transforms and saves their state as JSON; the
:func:`features` stage of ``mlsd run`` analyses it on the train split and hands
the fitted pipeline to training.
"""

from .._lazy import attach

# public names load on first use: importing the package costs nothing
_WHERE = {
    "FeaturePipeline": "_pipeline",
    "transform_for": "_pipeline",
    "feature_matrices": "_stage",
    "features": "_stage",
    "HashedNgramsFeature": "_transforms",
    "HashingFeature": "_transforms",
    "MISSING": "_transforms",
    "NumericFeature": "_transforms",
    "OTHER": "_transforms",
    "OneHotFeature": "_transforms",
    "TRANSFORMS": "_transforms",
    "TimeFeature": "_transforms",
    "Transform": "_transforms",
}
__getattr__, __dir__ = attach(__name__, _WHERE)

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
