"""Audit: is the test metric honest, and will the features generalise?

:func:`audit_pair` checks any train/test pair (``mlsd audit``) for the causes of
leakage the course lists (exact and near duplicates across splits, group and
time leakage, a feature that alone solves the task or is derived from the
target, ID-like columns, preprocessing fitted before the split) and for what
generalisation depends on (missing-rate and distribution shift, unseen
categories, class imbalance). Each :class:`Finding` carries a check name, a
severity (thresholds in :data:`THRESHOLDS`), the columns, a message and the
evidence numbers, with the rows they used. :func:`audit_splits` is the check
``mlsd run`` makes on its own splits; the :func:`audit` stage of ``mlsd run``
makes both, and explains the run's model with SHAP.
"""

from ._checks import THRESHOLDS
from ._leakage import (
    SEVERITIES,
    Finding,
    audit_splits,
    duplicates_across_splits,
    group_overlap,
)
from ._pair import AuditResult, audit_pair, split_table
from ._stage import audit

__all__ = [
    "SEVERITIES",
    "THRESHOLDS",
    "AuditResult",
    "Finding",
    "audit",
    "audit_pair",
    "audit_splits",
    "duplicates_across_splits",
    "group_overlap",
    "split_table",
]
