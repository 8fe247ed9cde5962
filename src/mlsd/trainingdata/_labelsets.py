"""Label sets: the target of a multilabel task, as a row's labels."""

from __future__ import annotations

import json
from typing import Any


def parse_labels(value: Any, separator: str = "|") -> list[str] | None:
    """A multilabel target's labels: a JSON list (``["a", "b"]``, ``[]``) or
    labels joined by ``separator`` (``a|b``); None when the row is unlabelled
    (a missing value, or JSON that is not a list)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items: list = list(value)
    else:
        text = str(value).strip()
        if text.startswith(("[", "{")):  # JSON: a list is a label set
            try:
                items = json.loads(text)
            except ValueError:
                return None
            if not isinstance(items, list):
                return None
        else:
            items = text.split(separator)
    return list(dict.fromkeys(str(v).strip() for v in items
                              if v is not None and str(v).strip()))
