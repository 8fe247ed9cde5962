"""Report: results as self-contained HTML files.

:func:`render_report` renders a run (counts, split, metrics, curves, audit
findings, lineage); :func:`render_audit` renders an audit of a train/test pair.
Plotly charts are embedded, so the files open offline. The :func:`report` stage
of ``mlsd run`` renders the run it ends.
"""

from ._html import render_audit, render_report
from ._stage import report

__all__ = [
    "render_audit",
    "render_report",
    "report",
]
