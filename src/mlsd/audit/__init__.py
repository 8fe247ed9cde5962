"""Audit: is the test metric honest?

The spine checks exact duplicates across splits (on the model's inputs) and the
overlap of a declared group key between splits; entities the spec declares as
shared (a user in a time split) are reported at low severity. Each
:class:`Finding` carries a check name, a severity, the columns, a message and the
evidence numbers; the report renders them.
"""

from ._leakage import (
    SEVERITIES,
    Finding,
    audit_splits,
    duplicates_across_splits,
    group_overlap,
)

__all__ = [
    "SEVERITIES",
    "Finding",
    "audit_splits",
    "duplicates_across_splits",
    "group_overlap",
]
