"""Models: tasks, learners, baselines, metrics and the saved artifact.

:func:`train` fits the spec's learner (LightGBM or linear) with class weights for
imbalance, picks a binary decision threshold on the validation split, and always
fits two baselines (class prior or mean, and the best one-column rule) so a run
says whether ML beats them. :class:`ModelArtifact` saves and loads the model in a
safe format (LightGBM text, or JSON coefficients) with its feature state, input
schema, threshold, metrics and lineage. :func:`train_model` is the ``train``
stage of ``mlsd run``. The registry (:func:`promote`, :func:`rollback`,
:func:`compare`) points aliases such as ``champion`` at model versions; its
stage :func:`register` compares a run's new model with the champion.
"""

from .._lazy import attach

# public names load on first use: importing the package costs nothing
_WHERE = {
    "FEATURES": "_artifact",
    "INPUT_SCHEMA": "_artifact",
    "MANIFEST": "_artifact",
    "ModelArtifact": "_artifact",
    "SHAP_ROWS": "_explain",
    "beeswarm": "_explain",
    "explain": "_explain",
    "shap_magnitude": "_explain",
    "tree_shap": "_explain",
    "LEARNERS": "_learners",
    "Learner": "_learners",
    "LightGBMLearner": "_learners",
    "LinearLearner": "_learners",
    "PRIMARY": "_metrics",
    "binary_metrics": "_metrics",
    "choose_threshold": "_metrics",
    "curves": "_metrics",
    "multiclass_metrics": "_metrics",
    "regression_metrics": "_metrics",
    "task_metrics": "_metrics",
    "DEFAULT_METRICS": "_stage",
    "input_schema": "_stage",
    "labelled_matrices": "_stage",
    "load_model": "_stage",
    "train_model": "_stage",
    "prune_stage": "_stage",
    "search_stage": "_stage",
    "search": "_search",
    "prune": "_prune",
    "export_onnx": "_onnx",
    "aliases": "_registry",
    "check_alias": "_registry",
    "compare": "_registry",
    "model_parts": "_registry",
    "promote": "_registry",
    "read_labelled": "_registry",
    "register": "_registry",
    "rollback": "_registry",
    "TrainResult": "_train",
    "encode_target": "_train",
    "target_array": "_train",
    "train": "_train",
}
__getattr__, __dir__ = attach(__name__, _WHERE)

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
    "aliases",
    "beeswarm",
    "check_alias",
    "compare",
    "binary_metrics",
    "choose_threshold",
    "curves",
    "encode_target",
    "explain",
    "export_onnx",
    "input_schema",
    "labelled_matrices",
    "load_model",
    "model_parts",
    "multiclass_metrics",
    "regression_metrics",
    "shap_magnitude",
    "target_array",
    "task_metrics",
    "train",
    "train_model",
    "promote",
    "prune",
    "prune_stage",
    "read_labelled",
    "register",
    "rollback",
    "search",
    "search_stage",
    "tree_shap",
]
