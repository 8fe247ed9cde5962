"""Models: tasks, learners, baselines, metrics and the saved artifact.

:func:`train` fits the spec's learner (LightGBM or linear) with class weights for
imbalance, picks a binary decision threshold on the validation split, and always
fits two baselines (class prior or mean, and the best one-column rule) so a run
says whether ML beats them. :class:`ModelArtifact` saves and loads the model in a
safe format (LightGBM text, or JSON coefficients) with its feature state, input
schema, threshold, metrics and lineage. :func:`train_model` is the ``train``
stage of ``mlsd run``.
"""

from ._artifact import FEATURES, INPUT_SCHEMA, MANIFEST, ModelArtifact
from ._explain import SHAP_ROWS, beeswarm, explain, shap_magnitude
from ._learners import LEARNERS, Learner, LightGBMLearner, LinearLearner
from ._metrics import (
    PRIMARY,
    binary_metrics,
    choose_threshold,
    curves,
    multiclass_metrics,
    regression_metrics,
    task_metrics,
)
from ._stage import (
    DEFAULT_METRICS,
    input_schema,
    labelled_matrices,
    load_model,
    train_model,
)
from ._train import TrainResult, encode_target, target_array, train

__all__ = [
    "DEFAULT_METRICS",
    "FEATURES",
    "INPUT_SCHEMA",
    "LEARNERS",
    "MANIFEST",
    "PRIMARY",
    "SHAP_ROWS",
    "Learner",
    "LightGBMLearner",
    "LinearLearner",
    "ModelArtifact",
    "TrainResult",
    "beeswarm",
    "binary_metrics",
    "choose_threshold",
    "curves",
    "encode_target",
    "explain",
    "input_schema",
    "labelled_matrices",
    "load_model",
    "multiclass_metrics",
    "regression_metrics",
    "shap_magnitude",
    "target_array",
    "task_metrics",
    "train",
    "train_model",
]
