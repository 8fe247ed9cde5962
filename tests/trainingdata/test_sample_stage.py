"""The sample stage in a run, `mlsd sample`, and erasure of sampled rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import mlsd
from mlsd.errors import SpecError
from mlsd.pipeline import delete_rows, sample_dataset
from mlsd.runtime import Project
from tests._helpers import run_cli

pytestmark = pytest.mark.slow


def _with_sample(folder, sample):
    path = folder / "mlsd.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["sample"] = sample
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def _split_table(folder):
    return Project.find(start=folder).lake.read("splits", "forum-spam")


def test_a_sample_trains_on_drawn_rows_and_never_touches_valid_or_test(
        fresh_project):
    plain = mlsd.run(fresh_project, until="split")
    assert "sample" not in plain or not plain.get("sample")
    before = _split_table(fresh_project)
    _with_sample(fresh_project, {"method": "weighted", "n": 3000,
                                 "weights": "likes + 1"})
    s = mlsd.run(fresh_project, until="split")
    after = _split_table(fresh_project)
    # valid and test: the same rows as without a sample, all of them
    def ids(t, part):
        return set(np.array(t.column("post_id").to_pylist())[
            np.array(t.column("_split").to_pylist()) == part])

    for part in ("valid", "test"):
        assert ids(after, part) == ids(before, part), part
    split = np.array(after.column("_split").to_pylist())
    assert (split == "train").sum() == 3000 == s["sample"]["rows"]
    assert s["split"]["left_out"]["unsampled"] == s["sample"]["population"] - 3000
    # the drawn rows carry their weights (mean 1 over train), the rest weigh 1
    w = after.column("_weight").to_numpy()
    assert np.isclose(w[split == "train"].mean(), 1.0) and w[split == "train"].std() > 0
    assert (w[split != "train"] == 1.0).all()
    # the sample is a lake dataset in lineage: training -> samples -> splits
    project = Project.find(start=fresh_project)
    sample_node = f"dataset:samples/forum-spam@{s['sample']['version']}"
    edges = project.catalog.upstream(f"dataset:splits/forum-spam@"
                                     f"{s['split']['version']}")
    rel = {(e["src"], e["relation"]) for e in edges}
    assert (sample_node, "trains_on") in rel
    assert any(src.startswith("dataset:training/") and r == "sampled_from"
               for src, r in rel)
    drawn = project.lake.read("samples", "forum-spam")
    assert drawn.num_rows == 3000 and "_weight" in drawn.column_names
    assert s["sample"]["method"] == "weighted" and s["sample"]["bias"]
    # the likes of the drawn rows lean high: weighted by likes + 1
    train_likes = np.array(drawn.column("likes").to_pylist(), dtype=float)
    all_likes = np.array(project.lake.read("training", "forum-spam").column(
        "likes").to_pylist(), dtype=float)
    assert np.nanmean(train_likes) > np.nanmean(all_likes)
    # an erasure reaches the sample too
    author = drawn.column("author_id")[0].as_py()
    res = delete_rows(project, "posts_export", f"author_id = '{author}'")
    res_log = delete_rows(project, "posts_log", f"author_id = '{author}'")
    left = project.lake.read("samples", "forum-spam")
    assert author not in set(left.column("author_id").to_pylist())
    assert (res.get("samples") or res_log.get("samples"))["forum-spam"]["deleted"] > 0


def test_sample_command_on_a_dataset_and_a_file(fresh_project):
    mlsd.run(fresh_project, until="table")
    proc = run_cli("sample", "training/forum-spam", "--method", "stratified", "-n",
                   "400", "--by", "is_spam", "--write", "strat", "--json",
                   cwd=fresh_project)
    res = json.loads(proc.stdout)
    assert res["rows"] == 400 and res["written"]["dataset"] == "samples/strat"
    by = {b["column"]: b for b in res["bias"]}
    spam = {x["value"]: x for x in by["is_spam"]["shares"]}
    assert abs(spam["true"]["sample"] - spam["true"]["population"]) < 0.003
    project = Project.find(start=fresh_project)
    node = f"dataset:samples/strat@{res['written']['version']}"
    assert any(e["relation"] == "sampled_from" for e in project.catalog.upstream(node))
    # a file, outside the lake; a judgment sample keeps who chose
    proc = run_cli("sample", "data/posts_log.jsonl", "--method", "judgment",
                   "--where", "likes > 40", "--chosen-by", "moderators", "--json",
                   cwd=fresh_project)
    res = json.loads(proc.stdout)
    assert res["settings"]["chosen_by"] == "moderators" and res["rows"] > 0
    assert res["probability"] is False
    # mistakes: one line each, exit 2
    for args, msg in [(["--method", "random"], "needs `n` or `fraction`"),
                      (["--method", "random", "-n", "5", "--by", "x"],
                       "does not read it"),
                      (["--method", "weighted", "-n", "5", "--weights", "nope"],
                       "sample.weights"),
                      (["--method", "quota", "--by", "is_spam", "--quota", "x"],
                       "CATEGORY=N")]:
        proc = run_cli("sample", "training/forum-spam", *args, cwd=fresh_project,
                       check=False)
        assert proc.returncode == 2 and msg in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    with pytest.raises(SpecError, match="sample.method"):
        sample_dataset(project, "training/forum-spam", {"method": "nope"})


def test_every_method_on_a_real_data_set(tmp_path):
    """Palmer penguins (344 rows, 3 species, missing values): each method from
    Python, and a sample from the spec of a project made by `mlsd init --from`."""
    import pyarrow as pa
    from palmerpenguins import load_penguins

    from mlsd.spec import SampleSpec
    from mlsd.trainingdata import draw

    frame = load_penguins()
    frame["id"] = [f"p{i:03d}" for i in range(len(frame))]
    frame["next"] = [f"p{(i + 1) % len(frame):03d}" for i in range(len(frame))]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    specs = {
        "convenience": {"n": 20, "where": "island = 'Dream'"},
        "snowball": {"n": 10, "keys": ["p000"], "link": "next"},
        "judgment": {"where": "body_mass_g > 6000", "chosen_by": "a biologist"},
        "quota": {"by": "species", "per_category": 10},
        "random": {"n": 100},
        "stratified": {"n": 90, "by": "species", "allocation": "equal"},
        "weighted": {"n": 100, "weights": "coalesce(body_mass_g, 0)"},
        "reservoir": {"n": 50},
        "importance": {"n": 200, "density": "CASE WHEN species = 'Gentoo' THEN 2 "
                                            "ELSE 1 END"},
    }
    for method, settings in specs.items():
        s = draw(table, SampleSpec(method=method, **settings), seed=1, key="id")
        assert s.rows.num_rows > 0 and "species" in {b["column"] for b in
                                                      s.report["bias"]}, method
        if method == "stratified":
            counts = s.rows.group_by("species").aggregate([("id", "count")])
            assert sorted(counts.column("id_count").to_pylist()) == [30, 30, 30]
        if method == "snowball":
            assert s.rows.column("id").to_pylist() == [f"p{i:03d}" for i in range(10)]
    # from the spec: a project made from the file, with a quota sample
    data = tmp_path / "penguins.csv"
    frame.drop(columns=["id", "next"]).to_csv(data, index=False)
    folder = tmp_path / "pg"
    run_cli("init", str(folder), "--from", str(data), "--target", "species",
            cwd=tmp_path)
    _with_sample(folder, {"method": "quota", "by": "island", "per_category": 30})
    s = mlsd.run(folder, until="split")
    assert s["sample"]["rows"] == 90 and s["split"]["sizes"]["train"] == 90
    assert s["sample"]["probability"] is False
    shares = {x["value"]: x for b in s["sample"]["bias"] if b["column"] == "island"
              for x in b["shares"]}
    assert abs(shares["Torgersen"]["sample"] - 1 / 3) < 1e-3  # rounded to 4 places
    assert any(w.startswith("island:") for w in s["sample"]["warnings"])


@pytest.mark.parametrize("sample", [
    {"method": "convenience", "n": 500, "where": "likes > 3"},
    {"method": "judgment", "where": "views > 200", "chosen_by": "moderators"},
    {"method": "quota", "by": "author_country", "per_category": 100},
    {"method": "random", "fraction": 0.3, "replace": True},
    {"method": "stratified", "n": 2000, "by": "is_spam", "allocation": "equal"},
    {"method": "reservoir", "n": 1500, "weights": "views"},
    {"method": "importance", "n": 3000, "density": "1 + likes"},
], ids=lambda s: s["method"])
def test_every_method_from_the_spec_of_the_example(fresh_project, sample):
    from mlsd.runtime import Project

    project = Project.find(start=fresh_project).with_overrides(
        [f"sample={json.dumps(sample)}"])
    s = mlsd.run(project, until="split")
    got = s["sample"]
    assert got["method"] == sample["method"] and got["rows"] > 0
    assert s["split"]["sizes"]["train"] == got["rows"]
    assert got["bias"] and got["dataset"] == "samples/forum-spam"
    if sample["method"] == "stratified":
        spam = {x["value"]: x for b in got["bias"] if b["column"] == "is_spam"
                for x in b["shares"]}["true"]
        # equal allocation: the spam rows of train are fewer than 1,000, so
        # all are kept, and the rest of the 2,000 are ham
        assert abs(spam["sample"] * 2000 - spam["population"] * got["population"]
                   ) < 2 and spam["sample"] > 2 * spam["population"]
    if sample["method"] == "random":  # drawn with replacement: draws, not rows
        assert got["drawn"] == round(0.3 * got["population"]) > got["rows"]


def test_the_run_prints_the_samples_notes(example_dir, tmp_path, monkeypatch):
    """A stratified sample by a number (more strata than drawn rows) runs,
    and `mlsd run` prints why its allocation is mostly rounding."""
    import shutil

    from typer.testing import CliRunner

    from mlsd.cli import app

    folder = tmp_path / "p"
    shutil.copytree(example_dir, folder)
    monkeypatch.chdir(folder)
    r = CliRunner().invoke(app, ["run", "--until", "sample", "--set",
                                 "sample={method: stratified, n: 50, by: views}"])
    assert r.exit_code == 0, r.output
    assert "Sample (stratified): 50 of " in r.output
    assert "note: 'views' has " in r.output and "strata for 50 drawn rows" in r.output
