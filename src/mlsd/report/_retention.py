"""Report retention: each run writes a report of several MB; the last N stay."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def prune_reports(home: Path, catalog, keep: int, *, current: Path | None = None,
                  dry_run: bool = False) -> list[dict[str, Any]]:
    """Remove the reports of all but the ``keep`` latest runs (``current``, the
    report being written, counts as the latest). Reports the catalog does not
    know (copies, a crashed run's) are removed too. Returns what was (or, with
    ``dry_run``, would be) removed: path and bytes."""
    folder = home / "reports"
    if not folder.is_dir():
        return []
    known = [home.parent / a["path"] for a in catalog.artifacts("report")]
    order = ([current] if current is not None else []) + [
        p for p in reversed(known) if p != current]  # newest first
    kept = {p.resolve() for p in order[:keep]}
    removed = []
    for p in sorted(folder.glob("*.html")):
        if p.resolve() in kept:
            continue
        removed.append({"path": str(p.relative_to(home.parent)),
                        "bytes": p.stat().st_size})
        if not dry_run:
            p.unlink()
    return removed
