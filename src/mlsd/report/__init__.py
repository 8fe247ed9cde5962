"""Report: results as self-contained HTML files.

:func:`render_report` renders a run (counts, split, metrics, curves, audit
findings, lineage); :func:`render_audit` renders an audit of a train/test pair.
Plotly charts are embedded, so the files open offline. The :func:`report` stage
of ``mlsd run`` renders the run it ends and keeps the last ``report.keep`` runs'
reports (:func:`prune_reports`, also behind ``mlsd gc``).
"""

from .._lazy import attach

# public names load on first use: importing the package costs nothing
_WHERE = {
    "prune_reports": "_retention",
    "render_audit": "_html",
    "render_monitor": "_html",
    "render_report": "_html",
    "report": "_stage",
    "track": "_stage",
    "log_run": "_mlflow",
}
__getattr__, __dir__ = attach(__name__, _WHERE)

__all__ = [
    "prune_reports",
    "render_audit",
    "render_monitor",
    "render_report",
    "report",
    "track",
    "log_run",
]
