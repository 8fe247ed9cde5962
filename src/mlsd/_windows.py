"""Windows of event time: their definitions and durations, shared by the
spec (which checks them), the batch and online computations
(:mod:`mlsd.features._stream`) and the service."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import SpecError

AGGS = ("count", "sum", "mean", "min", "max")
KINDS = ("sliding", "tumbling", "session")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(text: str | float | int, where: str) -> float:
    """A duration: ``90s``, ``15m``, ``1h``, ``7d``, ``2w`` or seconds."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
        if not m:
            raise SpecError(f"{where}: {text!r} is not a duration (like 30s, 15m, "
                            f"1h, 7d)")
        value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not value > 0 or not math.isfinite(value):
        raise SpecError(f"{where}: a duration must be more than 0, got {text!r}")
    return value


def _span(s: float) -> str:
    for unit in ("w", "d", "h", "m"):
        if s % _UNITS[unit] == 0:
            return f"{int(s // _UNITS[unit])}{unit}"
    return f"{s:g}s"


@dataclass(frozen=True)
class Window:
    """One windowed aggregate (see the module)."""

    column: str | None
    agg: str
    window: float  # seconds
    by: str
    time: str
    kind: str = "sliding"
    gap: float | None = None  # seconds, session windows
    lateness: float = 0.0  # seconds

    @property
    def name(self) -> str:
        """The column the feature adds: ``amount_sum_1h_by_user_id``."""
        what = "events" if self.agg == "count" and self.column is None else self.column
        kind = "" if self.kind == "sliding" else f"_{self.kind}"
        return f"{what}_{self.agg}{kind}_{_span(self.window)}_by_{self.by}"

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "agg": self.agg, "window": self.window,
                "by": self.by, "time": self.time, "kind": self.kind,
                "gap": self.gap, "lateness": self.lateness}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Window:
        return cls(**doc)

    @property
    def retention(self) -> float:
        """How far behind the watermark an event can still be needed."""
        return self.window + self.lateness
