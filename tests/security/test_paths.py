"""Source paths stay in the project (or a folder the spec lists), devices are
never read, and files named on the command line stay allowed (issue 11)."""

from __future__ import annotations

import os
import shutil

import pytest

from mlsd.errors import DataError
from mlsd.etl import connector_for
from mlsd.spec._models import BlobSourceSpec, ProjectSpec, SourceSpec
from tests._helpers import run_cli


def _source(path: str, data_roots=()) -> SourceSpec:
    spec = SourceSpec(path=path, format="csv")
    spec._data_roots = tuple(data_roots)
    return spec


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/passwd", "../*.csv",
                                  "link.csv"])
def test_a_source_cannot_read_outside_the_project(tmp_path, path):
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "outside.csv").write_text("a,b\n1,2\n")
    os.symlink(tmp_path / "outside.csv", root / "link.csv")  # a link out
    with pytest.raises(DataError, match="outside the project folder"):
        connector_for("s", _source(path), root).paths()


def test_data_roots_let_a_source_read_a_folder_outside(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "x.csv").write_text("a,b\n1,2\n")
    found = connector_for("s", _source(str(shared / "x.csv"), [str(shared)]),
                          root).paths()
    assert found == [shared / "x.csv"]
    relative = connector_for("s", _source("../shared/x.csv", ["../shared"]), root)
    assert relative.paths() == [root / "../shared/x.csv"]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_never_read(tmp_path, device):
    with pytest.raises(DataError, match="not a regular file"):
        connector_for("s", _source(device, ["/dev"]), tmp_path).paths()


def test_a_folder_source_stays_inside_too(tmp_path):
    root = tmp_path / "project"
    (root / "docs").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("x")
    os.symlink(tmp_path / "secret.txt", root / "docs" / "secret.txt")
    spec = BlobSourceSpec(folder="docs")
    with pytest.raises(DataError, match="outside the project folder"):
        connector_for("d", spec, root).files()


def test_the_project_spec_hands_its_data_roots_to_its_sources(example_dir):
    import yaml

    doc = yaml.safe_load((example_dir / "mlsd.yaml").read_text())
    doc["data_roots"] = ["/srv/data"]
    spec = ProjectSpec.model_validate(doc)
    assert all(s._data_roots == ("/srv/data",) for s in spec.sources.values())


def test_ingest_refuses_a_path_out_of_the_project_in_one_line(fresh_project,
                                                               tmp_path):
    outside = tmp_path / "elsewhere.jsonl"
    shutil.copy(fresh_project / "data" / "posts_log.jsonl", outside)
    spec = fresh_project / "mlsd.yaml"
    spec.write_text(spec.read_text().replace("data/posts_log.jsonl", str(outside)))
    proc = run_cli("ingest", cwd=fresh_project, check=False)
    assert proc.returncode == 2 and "outside the project folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    # a file named on the command line may be anywhere
    proc = run_cli("audit", "--train", str(outside), "--test", str(outside),
                   "--target", "is_spam", "--json", cwd=tmp_path, check=False)
    assert "outside the project" not in proc.stderr and proc.returncode in (0, 1)
