"""The split stage records its cuts and keeps them while its settings stay."""

from __future__ import annotations

import json

import yaml

import mlsd
from mlsd.runtime import Project


def _splits(folder):
    t = Project.find(start=folder).lake.read("splits", "forum-spam")
    return dict(zip(t.column("post_id").to_pylist(), t.column("_split").to_pylist(),
                    strict=True))


def test_appended_rows_keep_the_recorded_cut_offs(fresh_project):
    first = mlsd.run(fresh_project, until="split")
    assert first["split"]["cuts_reused"] is False
    assert set(first["split"]["cut_offs"]) == {"valid_start", "test_start"}
    before = _splits(fresh_project)
    log = fresh_project / "data/posts_log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()[:50]]
    with log.open("a") as f:
        for i, r in enumerate(rows):
            r["post_id"] = f"new{i:04d}"
            r["created_at"] = f"2031-01-01T00:{i:02d}:00Z"
            f.write(json.dumps(r) + "\n")
    again = mlsd.run(fresh_project, until="split")
    assert again["split"]["cuts_reused"] is True
    assert again["split"]["cut_offs"] == first["split"]["cut_offs"]
    after = _splits(fresh_project)
    assert {k: after[k] for k in before} == before  # no earlier row moved
    assert {after[f"new{i:04d}"] for i in range(50)} == {"test"}
    # a changed split setting cuts again, from the data as it is now
    path = fresh_project / "mlsd.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["split"]["gap"] = "1d"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    third = mlsd.run(fresh_project, until="split")
    assert third["split"]["cuts_reused"] is False
    assert third["split"]["left_out"]["gap"] > 0
    assert third["split"]["cut_offs"] != first["split"]["cut_offs"]
