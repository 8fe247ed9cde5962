"""Every public name resolves, and the layers of DESIGN.md import downwards only."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import mlsd

SRC = Path(mlsd.__file__).parent
PACKAGES = sorted(p.name for p in pkgutil.iter_modules([str(SRC)]) if p.ispkg)

# DESIGN.md, "Who may import whom": the layer of each stage
LAYER = {"errors": 1, "spec": 1, "formats": 1, "lake": 1, "engine": 1, "runtime": 1,
         "connectors": 2, "etl": 2.5, "trainingdata": 3, "features": 3,
         "models": 3.5, "audit": 4, "report": 4, "serve": 5, "examples": 1,
         "scaffold": 3,
         "_windows": 1, "_reservoir": 1,
         "pipeline": 6, "cli": 7}


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_resolve(name):
    module = importlib.import_module(f"mlsd.{name}")
    assert module.__doc__ and len(module.__doc__) > 40, "say what the stage does"
    exported = getattr(module, "__all__", None)
    assert exported, f"mlsd.{name} has no __all__"
    for public in exported:
        assert hasattr(module, public), f"mlsd.{name}.{public} does not resolve"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            parts = path.relative_to(SRC).parts
            base = list(parts[:-1])[: len(parts) - node.level]
            target = (base + (node.module or "").split("."))
            target = [t for t in target if t]
            if target:
                out.add(target[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "mlsd."):
            out.add(node.module.split(".")[1])
    return out


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(
    p.relative_to(SRC)))
def test_layers_import_downwards(path):
    own = path.relative_to(SRC).parts[0].removesuffix(".py")
    if own in ("__init__", "__main__"):
        return
    for other in _imports(path):
        if other == own or other not in LAYER:
            continue
        assert LAYER[other] <= LAYER[own], (
            f"{path.relative_to(SRC)} (layer {LAYER[own]}) imports {other} "
            f"(layer {LAYER[other]})")
        assert other not in ("pipeline", "cli") or own in ("cli",), (
            "no stage imports pipeline or cli")


def test_openmp_threads_spin_briefly_then_sleep_unless_the_user_says_otherwise():
    """LightGBM's OpenMP threads must not spin long next to other work, nor be
    woken for every parallel region: mlsd sets libgomp's passive policy with a
    short spin before LightGBM loads, and keeps what the user set."""
    import os
    import subprocess
    import sys

    probe = ("import os, mlsd, lightgbm, mlsd.models\n"
             "print(os.environ.get('OMP_WAIT_POLICY'), "
             "os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def policy(**extra: str) -> str:
        return subprocess.run([sys.executable, "-c", probe], env={**env, **extra},
                              text=True, capture_output=True,
                              check=True).stdout.strip()

    assert policy() == "PASSIVE 10000"
    assert policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE None"
    assert policy(GOMP_SPINCOUNT="300000") == "None 300000"
