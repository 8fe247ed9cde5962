"""Training data: which rows train, tune and test the model.

:func:`assign_splits` gives every row of the training table a split, by a
deterministic strategy the spec chooses (random, stratified, time, group), with the
validation split carved from the training side. Later stages read the split column
and fit on ``train`` only.
"""

from ._split import SPLIT, TEST, TRAIN, VALID, assign_splits, stable_unit

__all__ = ["SPLIT", "TEST", "TRAIN", "VALID", "assign_splits", "stable_unit"]
