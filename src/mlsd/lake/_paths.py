"""Dataset names and the project folders they map to, never escaping them."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import LakeError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe dataset or source name, else raise.

    A name is one path segment of letters, digits, ``_``, ``.`` and ``-``: no
    ``..``, separators, absolute paths or NUL bytes, so it cannot escape the lake.
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise LakeError(
            f"invalid name {name!r}: use letters, digits, '_', '.', '-' "
            f"(one path segment, not starting with '.' or '-', no '..')"
        )
    return name


def name_ok(name: str) -> bool:
    """Whether ``name`` is a safe dataset or source name (:func:`check_name`)."""
    try:
        check_name(name)
    except LakeError:
        return False
    return True


def inside(root: Path, *parts: str) -> Path:
    """Join ``parts`` under ``root`` and refuse any result outside ``root``."""
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise LakeError(f"path {path} escapes the project folder {root}")
    return path
