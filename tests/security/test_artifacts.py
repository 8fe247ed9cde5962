"""A model's files, its manifest included, are checked against the digest
the catalog recorded when it was saved (issue 11): a doctored threshold or a
manifest without `files` is refused; a bare folder needs
--trust-unregistered; a manifest that is not JSON is one line."""

from __future__ import annotations

import json
import shutil

import pytest

from mlsd.errors import ModelError
from mlsd.models import ModelArtifact
from tests._helpers import run_cli


@pytest.fixture()
def model(ran_project, tmp_path):
    """A private copy of the ran example project, and its model folder."""
    folder, summary = ran_project
    copy = tmp_path / "demo"
    shutil.copytree(folder, copy)
    return copy, copy / summary["paths"]["model"]


def _doctor(model_dir, change) -> None:
    path = model_dir / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_a_doctored_manifest_is_refused(model):
    project, folder = model
    ModelArtifact.load(folder)  # as saved: fine
    _doctor(folder, lambda d: d.update(threshold=0.0))  # every post spam
    with pytest.raises(ModelError, match="changed since it was saved"):
        ModelArtifact.load(folder)
    _doctor(folder, lambda d: d.pop("files"))  # verification off, before
    proc = run_cli("predict", "-i", "data/new_posts.csv", "-o", "out.csv",
                   cwd=project, check=False)
    assert proc.returncode == 2 and "changed since it was saved" in proc.stderr
    assert not (project / "out.csv").exists()


def test_a_bare_folder_needs_trust(model, tmp_path):
    project, folder = model
    bare = tmp_path / "elsewhere" / "m"
    shutil.copytree(folder, bare)
    with pytest.raises(ModelError, match="--trust-unregistered"):
        ModelArtifact.load(bare)
    assert ModelArtifact.load(bare, trust_unregistered=True).model_id
    proc = run_cli("predict", "-i", "data/new_posts.csv", "-o", "a.csv",
                   "--model", str(bare), cwd=project, check=False)
    assert proc.returncode == 2 and "--trust-unregistered" in proc.stderr
    run_cli("predict", "-i", "data/new_posts.csv", "-o", "b.csv", "--model",
            str(bare), "--trust-unregistered", cwd=project)
    # trusted, it is still checked against its own manifest's hashes
    (bare / "features.json").write_text("{}")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        ModelArtifact.load(bare, trust_unregistered=True)


def test_a_manifest_that_is_not_json_is_one_line(model, tmp_path):
    _, folder = model
    bare = tmp_path / "m"
    shutil.copytree(folder, bare)
    (bare / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelArtifact.load(bare, trust_unregistered=True)
    (bare / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="not an mlsd model manifest"):
        ModelArtifact.load(bare, trust_unregistered=True)
