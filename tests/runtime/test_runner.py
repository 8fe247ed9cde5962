"""The runner: stages declared, called in order, timed and traced; runs that
start at a later stage reuse only what is persisted and still valid."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter

import pytest
import yaml

import mlsd
from mlsd.errors import SpecError, StageError
from mlsd.pipeline import STAGES, stages
from mlsd.runtime import (
    ArtifactRef,
    DatasetRef,
    Project,
    RunContext,
    Runner,
    StageResult,
    stage,
)

pytestmark = pytest.mark.slow


# a toy stage, declared through the public interface only ----------------------
@stage(writes={"split_counts": "artifact"}, relations={"splits": "counted_in"},
       settings=lambda ctx: {"seed": ctx.seed})
def split_counts(ctx: RunContext, splits: DatasetRef) -> StageResult:
    """Count the rows of each split into a small JSON artifact."""
    counts = dict(Counter(ctx.read(splits).column("_split").to_pylist()))
    folder = ctx.artifact_path("split-counts", ctx.run_id)
    folder.mkdir(parents=True)
    (folder / "counts.json").write_text(json.dumps(counts))
    time.sleep(0.05)  # so its time is measurably its own
    ref = ArtifactRef(artifact_id=f"counts-{ctx.run_id}", kind="split-counts",
                      path=ctx.relative(folder), metadata=counts)
    return StageResult(outputs={"split_counts": ref},
                       summary={"split_counts": counts}, note=f"{counts}")


WITH_TOY = [*STAGES[:4], split_counts, *STAGES[4:]]


def test_a_toy_stage_runs_timed_and_in_lineage(fresh_project):
    s = mlsd.run(fresh_project, stages=WITH_TOY, until="split_counts")
    assert [e["stage"] for e in s["stages"]] == ["ingest", "table", "sample",
                                                 "split", "split_counts"]
    toy = s["stages"][-1]
    assert toy["status"] == "ran" and toy["seconds"] >= 0.05
    assert s["split_counts"] == s["split"]["sizes"]
    splits_node = f"dataset:splits/forum-spam@{s['split']['version']}"
    assert toy["reads"] == [splits_node]
    counts_node = f"split-counts:counts-{s['run_id']}"
    assert toy["writes"] == [counts_node]

    project = Project.find(start=fresh_project)
    cat = project.catalog
    rec = [r for r in cat.stage_runs(s["run_id"]) if r["stage"] == "split_counts"]
    assert rec and rec[0]["status"] == "done" and rec[0]["seconds"] >= 0.05
    art = cat.artifact(f"counts-{s['run_id']}")
    assert art["kind"] == "split-counts" and art["metadata"] == s["split_counts"]
    edges = cat.upstream(counts_node)
    assert {"src": splits_node, "dst": counts_node, "relation": "counted_in",
            "run_id": s["run_id"]} in edges
    # and through the split and the training table back to the source files
    files = {e["src"] for e in edges if e["src"].startswith("file:")}
    assert files == {f"file:{src['files'][0]['sha256']}" for src in s["sources"]}

    # a run can start at the toy stage: the split it reads is persisted
    assert next(x for x in stages(WITH_TOY) if x["stage"] == "split_counts")[
        "can_start_here"]
    again = mlsd.run(fresh_project, stages=WITH_TOY, from_="split_counts",
                     until="split_counts")
    assert [(e["stage"], e["status"]) for e in again["stages"]] == [
        ("ingest", "reused"), ("table", "reused"), ("sample", "reused"),
        ("split", "reused"), ("split_counts", "ran")]
    assert again["split_counts"] == s["split_counts"]
    assert again["sources"] == s["sources"]  # reused entries fill the summary


# declarations -----------------------------------------------------------------
def _noop(ctx):
    return StageResult()


def test_declaration_mistakes_are_named():
    @stage(writes={"a": "memory"})
    def first(ctx):
        return StageResult(outputs={"a": 1})

    @stage(writes={"b": "dataset"})
    def second(ctx, a, c):
        return StageResult()

    with pytest.raises(StageError, match="'second' reads 'c', which no stage "
                                         "before it writes"):
        Runner(stages=[first, second]).plan()
    with pytest.raises(StageError, match="two stages are named 'first'"):
        Runner(stages=[first, first]).plan()
    with pytest.raises(StageError, match=r"writes\['x'\] is 'table'"):
        stage(writes={"x": "table"})(_noop)
    with pytest.raises(StageError, match="relations name \\['z'\\]"):
        stage(writes={}, relations={"z": "of"})(_noop)
    with pytest.raises(StageError, match="no \\*args"):
        stage(writes={})(lambda ctx, *rest: StageResult())
    with pytest.raises(StageError, match="not a stage"):
        Runner(stages=[_noop]).plan()


def test_a_run_can_start_only_where_its_inputs_are_persisted():
    @stage(writes={"a": "memory"})
    def first(ctx):
        return StageResult(outputs={"a": 1})

    @stage(writes={"b": "dataset"})
    def second(ctx, a):
        return StageResult()

    @stage(writes={})
    def third(ctx, b):
        return StageResult()

    runner = Runner(stages=[first, second, third])
    assert runner.startable() == ["first", "third"]
    assert runner.why_not_from("second") == ("stage 'second' reads 'a', which "
                                             "stage 'first' keeps in memory only")
    with pytest.raises(StageError, match="Start from one of: first, third"):
        runner.plan(from_="second")
    with pytest.raises(StageError, match="--until first comes before --from third"):
        runner.plan(from_="third", until="first")
    # the run's own list: train reads the fitted features, kept in memory
    listed = {x["stage"]: x for x in stages()}
    assert [n for n, x in listed.items() if x["can_start_here"]] == [
        "ingest", "table", "sample", "split", "features", "audit", "track"]
    assert "'features'" in listed["train"]["why_not"]
    assert "'audit'" in listed["report"]["why_not"]


def test_a_stage_must_return_what_it_declares(fresh_project):
    @stage(writes={"thing": "dataset"}, settings=lambda ctx: {})
    def liar(ctx):
        return StageResult(outputs={"thing": "not a ref", "other": 1})

    with pytest.raises(StageError, match=r"missing|undeclared \['other'\]"):
        mlsd.run(fresh_project, stages=[liar])

    @stage(writes={"thing": "dataset"}, settings=lambda ctx: {})
    def wrong_kind(ctx):
        return StageResult(outputs={"thing": "not a ref"})

    with pytest.raises(StageError, match="return a DatasetRef"):
        mlsd.run(fresh_project, stages=[wrong_kind])
    runs = Project.find(start=fresh_project).catalog.runs()
    assert [r["status"] for r in runs] == ["failed", "failed"]
    records = Project.find(start=fresh_project).catalog.stage_runs()
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert "DatasetRef" in records[-1]["error"]


# the run's own stages: --until, --from, and what makes reuse refused ------------
def test_until_split_then_from_features_equals_a_whole_run(fresh_project, ran_project,
                                                           tmp_path):
    part = mlsd.run(fresh_project, until="split")
    assert [e["stage"] for e in part["stages"]] == ["ingest", "table", "sample",
                                                    "split"]
    assert "model" not in part and part["partial"] == {"from": None,
                                                       "until": "split"}
    project = Project.find(start=fresh_project)
    training = project.lake.read("training", "forum-spam")
    assert training.num_rows == part["split"]["rows"]
    assert sorted(training.column("_row").to_pylist()) == list(
        range(training.num_rows))
    # a vacuum commits, but keeps the data: what the split read is still valid
    from mlsd.pipeline import vacuum

    again = mlsd.run(fresh_project, until="split")  # nothing new: no new version
    assert again["split"]["version"] == part["split"]["version"]
    vacuum(project, retention_hours=0)
    rest = mlsd.run(fresh_project, from_="features")
    assert [(e["stage"], e["status"]) for e in rest["stages"]] == [
        ("ingest", "reused"), ("table", "reused"), ("sample", "reused"),
        ("split", "reused"), ("features", "ran"), ("train", "ran"),
        ("audit", "ran"), ("register", "ran"), ("report", "ran"), ("track", "ran")]
    whole = ran_project[1]
    for key in ("totals", "split", "audit", "audit_design", "shap",
                "importance", "metric_names", "lineage"):
        if key == "split":  # the second run kept the cuts the first recorded
            assert rest[key].pop("cuts_reused") and not dict(whole[key])[
                "cuts_reused"]
            assert rest[key] == {k: v for k, v in whole[key].items()
                                 if k != "cuts_reused"}
            continue
        assert rest[key] == whole[key], key
    keys = ("source", "load_id", "dataset", "version", "rows_in", "rows_stored",
            "rows_quarantined", "reasons", "files")
    assert [[x[k] for k in keys] for x in rest["sources"]] == [
        [x[k] for k in keys] for x in whole["sources"]]
    assert rest["model"]["metrics"] == whole["model"]["metrics"]
    # the model id's digest covers the features, metrics and input versions
    assert rest["model"]["model_id"][16:] == whole["model"]["model_id"][16:]
    report = (fresh_project / rest["paths"]["report"]).read_text(encoding="utf-8")
    assert "reused from run " + rest["stages"][0]["run_id"] in report


def test_from_refuses_what_is_not_there_or_no_longer_valid(fresh_project):
    with pytest.raises(StageError, match="no run of this project has completed "
                                         "'ingest' yet"):
        mlsd.run(fresh_project, from_="split")
    mlsd.run(fresh_project, until="split")
    # a setting the split depends on changed
    path = fresh_project / "mlsd.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["split"]["test"] = 0.25
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(StageError, match=r"'split' depends on changed .*split\.test"):
        mlsd.run(fresh_project, from_="features")
    mlsd.run(fresh_project, from_="split", until="split")  # the way out
    # a dataset changed outside a run (an erasure)
    from mlsd.pipeline import delete_rows

    project = Project.find(start=fresh_project)
    delete_rows(project, "posts_log", "author_id = 'u000001'")
    with pytest.raises(StageError, match=r"sources/posts_log@0 in run .*changed "
                                         r"since, outside a run \(version 1 "
                                         r"\(ERASE\)"):
        mlsd.run(fresh_project, from_="table")


def test_spec_problems_are_all_found_before_any_stage_runs(fresh_project):
    path = fresh_project / "mlsd.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["features"].append({"column": "karma"})
    spec["split"]["time"] = "posted"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecError) as err:
        mlsd.run(fresh_project)
    assert "split.time: column 'posted' is not in the data" in str(err.value)
    assert "features[9].column: 'karma' is not in the data" in str(err.value)
    assert not (fresh_project / ".mlsd/lake").exists()  # nothing was loaded


def test_a_stage_list_runs_on_a_copy_of_a_ran_project(ran_project, tmp_path):
    """--from audit on a project whose whole run is done: the model is read
    back from its artifact, and the audit and report come out the same."""
    folder = tmp_path / "demo"
    shutil.copytree(ran_project[0], folder)
    s = mlsd.run(folder, from_="audit")
    first = ran_project[1]
    # audit, register, report, track
    assert [e["status"] for e in s["stages"]] == ["reused"] * 6 + ["ran"] * 4
    assert s["model"] == first["model"]
    assert s["audit"] == first["audit"] and s["shap"] == first["shap"]
    assert (folder / s["paths"]["report"]).is_file()


def test_the_training_table_names_only_the_sources_it_used(fresh_project):
    """With a source outside `dataset.union`, the table stage's lineage and
    record name the union's source only, and a run can still start after it."""
    path = fresh_project / "mlsd.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["dataset"] = {"union": ["posts_export"], "key": "post_id"}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    s = mlsd.run(fresh_project, until="split")
    table_entry = s["stages"][1]
    assert table_entry["reads"] == [
        f"dataset:sources/posts_export@{s['sources'][0]['version']}"]
    node = table_entry["writes"][0]
    edges = Project.find(start=fresh_project).catalog.upstream(node)
    assert {e["src"] for e in edges if e["dst"] == node} == set(
        table_entry["reads"])
    again = mlsd.run(fresh_project, from_="split", until="split")
    assert [e["status"] for e in again["stages"]] == ["reused", "reused", "reused",
                                                      "ran"]


def test_an_erasure_predicate_reads_nothing_but_the_training_table(fresh_project):
    from mlsd.pipeline import _matching

    mlsd.run(fresh_project, until="split")
    project = Project.find(start=fresh_project)
    training = project.lake.read("training", project.spec.name)
    with pytest.raises(SpecError, match="training/.*refused"):
        _matching(training, f"training/{project.spec.name}",
                  "(SELECT count(*) FROM read_text('/etc/hostname')) > 0", ["_row"])


def test_a_schema_frozen_by_ingest_does_not_make_ingest_stale(fresh_project):
    """Without declared schemas, ingest infers and freezes them: its record
    holds the frozen files' hashes, so the next run can start after it."""
    for source in ("posts_export", "posts_log"):
        (fresh_project / f"schemas/{source}.yaml").unlink()
    first = mlsd.run(fresh_project, until="ingest")
    assert all(src["schema_frozen"] for src in first["sources"])
    again = mlsd.run(fresh_project, from_="table", until="split")
    assert [e["status"] for e in again["stages"]] == ["reused", "ran", "ran", "ran"]
    # and a schema edited since is a changed setting of ingest
    path = fresh_project / "schemas/posts_log.yaml"
    path.write_text(path.read_text().replace("likes: int64", "likes: float64"))
    with pytest.raises(StageError, match=r"schemas\.posts_log"):
        mlsd.run(fresh_project, from_="table")
