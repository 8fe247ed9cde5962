"""Training data: which rows train, tune and test the model.

:func:`assign_splits` gives every row of the training table a split, by a
deterministic strategy the spec chooses (random, stratified, time, group), with the
validation split carved from the training side. Two stages of ``mlsd run`` live
here: :func:`table` writes the training table (the labelled rows of the sources)
as ``training/NAME``, and :func:`split` writes each row's split as
``splits/NAME``; later stages read both by version (:func:`split_parts`) and fit
on ``train`` only.
"""

from ._split import SPLIT, TEST, TRAIN, VALID, assign_splits, stable_unit
from ._stages import (
    ROW,
    schema_files,
    split,
    split_parts,
    table,
    training_table,
    union_schema,
)

__all__ = [
    "ROW",
    "SPLIT",
    "TEST",
    "TRAIN",
    "VALID",
    "assign_splits",
    "schema_files",
    "split",
    "split_parts",
    "stable_unit",
    "table",
    "training_table",
    "union_schema",
]
