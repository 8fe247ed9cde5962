"""Labels of the multilabel task: label sets from annotators and labeling
functions, their agreement, aggregation label by label and the label model."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pytest

import mlsd
from mlsd.pipeline import Project
from mlsd.trainingdata.labeling._sets import (
    aggregate_sets,
    binary_votes,
    jaccard,
    set_agreement,
    set_alpha,
)

LABELS = ["politics", "sports", "tech"]


def _store(rows: list[tuple[str, str, list[str] | str]]) -> pa.Table:
    return pa.table({"item": [r[0] for r in rows], "source": [r[1] for r in rows],
                     "label": [r[2] if isinstance(r[2], str) else json.dumps(r[2])
                               for r in rows]})


def _alpha_by_hand(sets: list[list[frozenset | None]]) -> float:
    """Krippendorff's alpha from its definition: observed disagreement within
    units over expected disagreement between all pairable values."""
    units = [[s for s in col if s is not None] for col in zip(*sets, strict=True)]
    units = [u for u in units if len(u) >= 2]
    values = [v for u in units for v in u]
    n = len(values)
    d = lambda a, b: 1 - jaccard(set(a), set(b))  # noqa: E731
    do = sum(sum(d(a, b) for a, b in itertools.permutations(u, 2)) / (len(u) - 1)
             for u in units) / n
    de = sum(d(a, b) for a, b in itertools.permutations(values, 2)) / (n * (n - 1))
    return 1 - do / de


def test_set_agreement_against_hand_computed_figures():
    f = frozenset
    sets = [[f({"a"}), f({"a", "b"}), f(), f({"b"}), None],
            [f({"a"}), f({"b"}), f(), f({"a", "b"}), f({"a"})],
            [None, f({"a", "b"}), f({"a"}), f({"b"}), f({"a"})]]
    assert set_alpha(sets) == pytest.approx(_alpha_by_hand(sets), abs=1e-9)
    rows = [(f"i{i}", f"r{j}", sorted(s)) for j, col in enumerate(sets)
            for i, s in enumerate(col) if s is not None]
    res = set_agreement(_store(rows))
    assert res["krippendorff_alpha"] == round(_alpha_by_hand(sets), 4)
    pair = {(p["a"], p["b"]): p for p in res["pairs"]}
    # r0 and r1 share i0..i3: same set on i0 and i2; Jaccard 1, 1/2, 1, 1/2
    assert pair[("r0", "r1")]["items"] == 4
    assert pair[("r0", "r1")]["agreement"] == 0.5
    assert pair[("r0", "r1")]["jaccard"] == 0.75
    assert res["raw_agreement"] == round(2 / 5, 4)  # i0 and i4 agree fully
    per = {p["label"]: p for p in res["per_label"]}
    from mlsd.trainingdata.labeling._agreement import fleiss_kappa, vote_counts

    by_label, *_ = binary_votes(_store(rows), partial=False)
    assert per["a"]["fleiss_kappa"] == round(fleiss_kappa(vote_counts(
        by_label["a"], 2)), 4)
    assert res["queue"][0]["item"] in ("i1", "i2", "i3")


def _planted_sets(n=500, seed=0):
    """Items with 0-3 topics; four careful annotators (each label flipped 5%
    of the time) and one careless (35%); each item labelled by three."""
    rng = np.random.default_rng(seed)
    truth = {f"i{i}": {lb for lb in LABELS if rng.random() < 0.35}
             for i in range(n)}
    flip = {"ann": 0.05, "bob": 0.05, "cat": 0.05, "dan": 0.05, "eve": 0.35}
    rows = []
    for it, s in truth.items():
        for who in rng.choice(list(flip), size=3, replace=False):
            got = {lb for lb in LABELS if (lb in s) != (rng.random() < flip[who])}
            rows.append((it, str(who), sorted(got)))
    return truth, rows


def test_dawid_skene_on_sets_finds_the_careless_annotator():
    truth, rows = _planted_sets()
    table = _store(rows)
    ds, detail = aggregate_sets(table, "dawid_skene", partial=False)
    mv, _ = aggregate_sets(table, "majority", partial=False)

    def exact(found):
        return np.mean([set(json.loads(found[it][0])) == s for it, s in truth.items()])
    assert exact(ds) >= exact(mv)
    assert exact(ds) > 0.9
    for lb in LABELS:
        acc = detail[lb]["voters"]
        assert min(acc, key=acc.get) == "eve"
        assert acc["eve"] == pytest.approx(0.65, abs=0.08)
        assert acc["ann"] == pytest.approx(0.95, abs=0.05)
    res = set_agreement(table)
    per = {p["annotator"]: p for p in res["per_annotator"]}
    assert min(per, key=lambda a: per[a]["jaccard_with_others"]) == "eve"
    # a confidence per item: its least sure label decision
    assert all(0.5 <= c <= 1 for _, c in ds.values())


def _functions(n=900, seed=0):
    """Texts with topic words; per label a reliable keyword, and a noisy
    word that appears at random (written as three copies of one rule)."""
    rng = np.random.default_rng(seed)
    words = {"politics": "vote", "sports": "goal", "tech": "chip"}
    truth, texts = {}, {}
    for i in range(n):
        s = {lb for lb in LABELS if rng.random() < 0.35}
        w = ["news"]
        w += [words[lb] for lb in s if rng.random() < 0.7]
        if rng.random() < 0.4:
            w.append("buzz")  # says nothing about sports
        truth[f"p{i}"], texts[f"p{i}"] = s, " ".join(w)
    return truth, texts


def test_the_label_model_beats_the_union_of_votes_on_sets(tmp_path):
    truth, texts = _functions()
    root = tmp_path / "p"
    (root / "data").mkdir(parents=True)
    lines = ["post_id,text,tags"] + [
        f"{k},{t},{('|'.join(sorted(truth[k])) or '[]') if i % 4 == 0 else ''}"
        for i, (k, t) in enumerate(texts.items())]
    (root / "data" / "posts.csv").write_text("\n".join(lines) + "\n")
    (root / "mlsd.yaml").write_text(
        "name: tags\nproblem: {task: multilabel, target: tags}\n"
        "sources:\n  posts: {path: data/posts.csv, key: post_id}\n"
        "features:\n  - {column: text, encode: tfidf}\nmodel: {kind: linear}\n"
        "labels:\n  functions:\n"
        "    vote: {label: politics, column: text, keywords: [vote]}\n"
        "    goal: {label: sports, column: text, keywords: [goal]}\n"
        "    chip: {label: tech, column: text, keywords: [chip]}\n"
        "    buzz1: {label: sports, column: text, keywords: [buzz]}\n"
        "    buzz2: {label: sports, column: text, regex: buzz}\n"
        "    buzz3: {label: sports, where: \"text LIKE '%buzz%'\"}\n")
    proj = Project.of(root)
    mlsd.pipeline.ingest(proj)
    rep = mlsd.pipeline.apply_label_functions(proj)
    per = {f["function"]: f for f in rep["functions"]}
    assert per["goal"]["accuracy"] == 1.0 and per["buzz1"]["accuracy"] < 0.5
    assert rep["label_model_micro_f1"] > rep["union_micro_f1"] + 0.05, rep
    assert rep["label_model_exact"] > rep["union_exact"]
    # the run: known sets first, then the label model's
    s = mlsd.run(proj.with_overrides([
        "labels.policy=[{from: column}, {from: function}]"]))
    got = s["training"]["labels"]["by_rule"]
    assert got["column"]["rows"] == 225 and got["function"]["rows"] > 400
    table = proj.lake.read("training", "tags")
    from mlsd.trainingdata._labelsets import parse_labels

    weak = [(k, parse_labels(v)) for k, v, w in zip(
        table.column("post_id").to_pylist(), table.column("tags").to_pylist(),
        table.column("_label_from").to_pylist(), strict=True) if w == "function"]
    assert np.mean([set(v) == truth[k] for k, v in weak]) > 0.6
    assert "micro_pr_auc" in s["model"]["metrics"]["model"]["test"]


def test_label_sets_import_aggregate_and_agree_from_the_cli_and_python(tmp_path):
    from typer.testing import CliRunner

    from mlsd.cli import app

    truth, rows = _planted_sets(n=120, seed=1)
    root = tmp_path / "p"
    (root / "data").mkdir(parents=True)
    (root / "data" / "posts.csv").write_text(
        "post_id,text,tags\n" + "".join(f"{it},text {it},\n" for it in truth))
    (root / "mlsd.yaml").write_text(
        "name: tags\nproblem: {task: multilabel, target: tags, separator: ';'}\n"
        "sources:\n  posts: {path: data/posts.csv, key: post_id}\n"
        "features:\n  - {column: text, encode: tfidf}\n"
        "labels: {policy: [{from: human, aggregate: dawid_skene}]}\n")
    (root / "labels.csv").write_text("post_id,label,annotator\n" + "".join(
        f"{it},{';'.join(s) or '[]'},{who}\n" for it, who, s in rows))
    proj = Project.of(root)
    mlsd.pipeline.ingest(proj)
    res = mlsd.pipeline.import_labels(proj, "labels.csv")
    assert res["rows"] == len(rows)
    from mlsd.trainingdata.labeling import read_labels

    stored = read_labels(proj.lake, "tags").column("label").to_pylist()
    assert all(v.startswith("[") for v in stored)  # "a;b" became a JSON set
    agg = mlsd.pipeline.aggregate_labels(proj, "dawid_skene")
    assert agg["multilabel"] and agg["items"] == 120
    runner = CliRunner()
    out = runner.invoke(app, ["label", "agreement", "--config",
                              str(root / "mlsd.yaml")])
    assert out.exit_code == 0, out.output
    assert "Jaccard" in out.output and "eve" in out.output
    s = mlsd.run(proj)
    assert s["training"]["labels"]["by_rule"]["human"]["rows"] == 120
    html = (root / s["paths"]["report"]).read_text()
    assert "Jaccard with the others' majority set" in html
    assert "label-plot-2" in html
    # exported for a second pass: each task pre-annotated with a label set
    doc = mlsd.pipeline.export_to_label(proj, n=4, labelled=True)
    mlsd.pipeline.write_next(doc, root / "again.json")
    tasks = json.loads((root / "again.json").read_text())
    assert len(tasks) == 4
    for t in tasks:
        choices = t["predictions"][0]["result"][0]["value"]["choices"]
        assert set(choices) <= set(LABELS)
    table = proj.lake.read("training", "tags")
    got = {k: set(json.loads(v)) for k, v in zip(
        table.column("post_id").to_pylist(), table.column("tags").to_pylist(),
        strict=True)}
    assert np.mean([got[k] == truth[k] for k in truth]) > 0.85
