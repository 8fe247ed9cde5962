"""The serving tests' project: a private copy of the run example."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlsd.pipeline import Project


def served_copy(src: Path, dst: Path) -> Project:
    """A copy of a run project, without the prediction log and feedback
    another test's service may have written into it."""
    shutil.copytree(src, dst)
    for area in ("predictions", "feedback"):
        shutil.rmtree(dst / ".mlsd" / "lake" / area, ignore_errors=True)
    return Project.of(dst)


@pytest.fixture()
def project(ran_project, tmp_path) -> Project:
    """A private copy of the run example: tests here write its logs."""
    return served_copy(Path(ran_project[0]), tmp_path / "demo")
