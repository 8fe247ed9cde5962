"""Audit: is the test metric honest, and will the features generalise?

:func:`audit_pair` checks any train/test pair (``mlsd audit``) for the causes of
leakage the course lists (exact and near duplicates across splits, group and
time leakage, a feature that alone solves the task or is derived from the
target, ID-like columns, preprocessing fitted before the split) and for what
generalisation depends on (missing-rate and distribution shift, unseen
categories, class imbalance); :func:`audit_labels` audits a multilabel target
one label at a time. Each :class:`Finding` carries a check name, a
severity (thresholds in :data:`THRESHOLDS`), the columns, a message and the
evidence numbers, with the rows they used. :func:`audit_splits` is the check
``mlsd run`` makes on its own splits; the :func:`audit` stage of ``mlsd run``
makes both, and explains the run's model with SHAP.
"""

from .._lazy import attach

# public names load on first use: importing the package costs nothing
_WHERE = {
    "THRESHOLDS": "_checks",
    "Finding": "_leakage",
    "SEVERITIES": "_leakage",
    "audit_splits": "_leakage",
    "duplicates_across_splits": "_leakage",
    "group_overlap": "_leakage",
    "AuditResult": "_pair",
    "audit_pair": "_pair",
    "audit_labels": "_pair",
    "split_table": "_pair",
    "audit": "_stage",
}
__getattr__, __dir__ = attach(__name__, _WHERE)

__all__ = [
    "SEVERITIES",
    "THRESHOLDS",
    "AuditResult",
    "Finding",
    "audit",
    "audit_labels",
    "audit_pair",
    "audit_splits",
    "duplicates_across_splits",
    "group_overlap",
    "split_table",
]
