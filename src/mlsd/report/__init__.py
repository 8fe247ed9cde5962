"""Report: results as self-contained HTML files.

:func:`render_report` renders a run (counts, split, metrics, curves, audit
findings, lineage); :func:`render_audit` renders an audit of a train/test pair.
Plotly charts are embedded, so the files open offline.
"""

from ._html import render_audit, render_report

__all__ = ["render_audit", "render_report"]
