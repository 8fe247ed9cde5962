"""Lazy public names for a package (PEP 562), so heavy submodules load on use.

Written by hand: it is the dozen lines of Scientific Python's SPEC 1 that
``lazy_loader.attach`` also implements, not worth a dependency.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def attach(package: str, where: dict[str, str]
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps each
    public name to the submodule (``_pipeline``) that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # the next access is plain
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__


def import_lightgbm_core() -> None:
    """Import LightGBM without its scikit-learn and pandas adapters, when none
    of the three is loaded yet.

    LightGBM imports scikit-learn and pandas as it loads, when installed, for
    its scikit-learn wrapper and DataFrame input: about 0.5 s of a 3.4 s
    `mlsd audit` of 1,000 rows, which uses the native API only. Both import
    normally afterwards; LightGBM's scikit-learn wrapper stays unusable in
    this process, so only a command that needs none calls this, never
    ``import mlsd`` (a user's own code may want the wrapper).
    """
    if "lightgbm" in sys.modules:
        return
    hidden = [m for m in ("sklearn", "pandas") if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import_module("lightgbm")
    finally:
        for m in hidden:
            sys.modules.pop(m, None)
