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
    "BinsFeature": "_numeric",
    "Block": "_pipeline",
    "CrossFeature": "_categorical",
    "FeaturePipeline": "_pipeline",
    "FourierFeature": "_numeric",
    "FrequencyFeature": "_categorical",
    "HashedNgramsFeature": "_text",
    "HashingFeature": "_categorical",
    "MISSING": "_base",
    "NumericFeature": "_numeric",
    "OTHER": "_base",
    "OneHotFeature": "_categorical",
    "OrdinalFeature": "_categorical",
    "PeriodicFeature": "_numeric",
    "TRANSFORMS": "_transforms",
    "Target": "_base",
    "TargetFeature": "_categorical",
    "TfidfFeature": "_text",
    "EmbeddingFeature": "_text",
    "TimeFeature": "_numeric",
    "Transform": "_base",
    "feature_matrices": "_stage",
    "features": "_stage",
    "transform_for": "_pipeline",
}
__getattr__, __dir__ = attach(__name__, _WHERE)

__all__ = [
    "MISSING",
    "OTHER",
    "TRANSFORMS",
    "BinsFeature",
    "Block",
    "CrossFeature",
    "FeaturePipeline",
    "FourierFeature",
    "FrequencyFeature",
    "HashedNgramsFeature",
    "HashingFeature",
    "NumericFeature",
    "OneHotFeature",
    "OrdinalFeature",
    "PeriodicFeature",
    "Target",
    "TargetFeature",
    "TfidfFeature",
    "EmbeddingFeature",
    "TimeFeature",
    "Transform",
    "feature_matrices",
    "features",
    "transform_for",
]
