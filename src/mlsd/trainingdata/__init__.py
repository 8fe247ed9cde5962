"""Training data: which rows train, tune and test the model.

:func:`draw` samples a table by any of the course's methods (convenience,
snowball, judgment, quota; random, stratified, weighted, reservoir, importance)
with a bias report; :class:`Reservoir` and :class:`WeightedReservoir` sample a
stream of Arrow batches. :func:`split_rows` gives every row of the training
table a split, by a deterministic strategy the spec chooses (random, stratified,
time, group, time+group), with the validation split carved from the training
side. Three stages of ``mlsd run`` live here: :func:`table` writes the training
table (the labelled rows of the sources) as ``training/NAME``, :func:`sample`
draws the rows to train on as ``samples/NAME``, and :func:`split` writes each
row's split and weight as ``splits/NAME``; later stages read them by version
(:func:`split_parts`) and fit on ``train`` only.
"""

from .._reservoir import Reservoir, WeightedReservoir
from ._augment import (
    AUGMENTED,
    TextOps,
    TrainTable,
    augment_rows,
    mixup,
    perturb,
    smote_rows,
    thesaurus_for,
)
from ._imbalance import (
    RAW_RESAMPLERS,
    RESAMPLERS,
    Resampled,
    TrainRows,
    class_balance,
    class_weights_for,
    cost_weights,
    resample,
    smotenc_rows,
)
from ._labelsets import parse_labels
from ._sample_stage import sample
from ._sampling import Sample, allocate, bias_report, draw, inclusion_probabilities
from ._split import (
    GAP,
    LATE,
    SPLIT,
    TEST,
    TRAIN,
    UNSAMPLED,
    VALID,
    SplitResult,
    assign_splits,
    split_rows,
    stable_unit,
)
from ._stages import (
    ROW,
    WEIGHT,
    driver_sample,
    keep_driver_sample,
    schema_files,
    split,
    split_parts,
    table,
    training_table,
    union_schema,
)
from ._thesaurus import FileThesaurus, WordNet

__all__ = [
    "AUGMENTED",
    "RAW_RESAMPLERS",
    "RESAMPLERS",
    "GAP",
    "LATE",
    "ROW",
    "SPLIT",
    "TEST",
    "TRAIN",
    "UNSAMPLED",
    "VALID",
    "WEIGHT",
    "Resampled",
    "Reservoir",
    "Sample",
    "SplitResult",
    "TextOps",
    "TrainRows",
    "TrainTable",
    "WeightedReservoir",
    "FileThesaurus",
    "WordNet",
    "allocate",
    "augment_rows",
    "assign_splits",
    "bias_report",
    "class_balance",
    "class_weights_for",
    "cost_weights",
    "draw",
    "driver_sample",
    "keep_driver_sample",
    "inclusion_probabilities",
    "mixup",
    "parse_labels",
    "perturb",
    "resample",
    "sample",
    "smote_rows",
    "smotenc_rows",
    "schema_files",
    "split",
    "split_parts",
    "split_rows",
    "stable_unit",
    "table",
    "thesaurus_for",
    "training_table",
    "union_schema",
]
