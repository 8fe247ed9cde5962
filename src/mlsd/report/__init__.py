"""Report: the run's results as one self-contained HTML file.

It renders what the stages recorded (counts, split, metrics, curves, audit
findings, lineage) with embedded Plotly charts, so the file opens offline.
"""

from ._html import render_report

__all__ = ["render_report"]
