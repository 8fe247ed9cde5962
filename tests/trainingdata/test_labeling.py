"""Hand labels: the label store, agreement statistics against hand-computed
values, and aggregation (Dawid-Skene recovering planted annotator noise)."""

from __future__ import annotations

import json
from contextlib import chdir
from pathlib import Path

import numpy as np
import pytest

import mlsd
from mlsd.errors import DataError
from mlsd.pipeline import Project
from mlsd.trainingdata.labeling import (
    agreement,
    cohen_kappa,
    dawid_skene,
    fleiss_kappa,
    krippendorff_alpha,
    majority_vote,
)


def test_cohen_kappa_of_the_textbook_table():
    # 50 items: both yes 20, A yes B no 5, A no B yes 10, both no 15:
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4
    a = np.array([1] * 20 + [1] * 5 + [0] * 10 + [0] * 15)
    b = np.array([1] * 20 + [0] * 5 + [1] * 10 + [0] * 15)
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # items one of them did not label (-1) are left out
    assert cohen_kappa(np.r_[a, -1, 1], np.r_[b, 0, -1]) == pytest.approx(0.4)
    # ordered labels: a near miss counts partly (quadratic weights)
    x, y = np.array([0, 1, 2, 2, 1, 0]), np.array([0, 2, 2, 1, 1, 0])
    assert cohen_kappa(x, y, weights="quadratic") > cohen_kappa(x, y)


FLEISS = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6],
                   [0, 3, 9, 2, 0], [2, 2, 8, 1, 1], [7, 7, 0, 0, 0],
                   [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0],
                   [0, 2, 2, 3, 7]])


def test_fleiss_kappa_of_the_textbook_table_and_statsmodels():
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 labels
    assert fleiss_kappa(FLEISS) == pytest.approx(0.20993, abs=1e-5)
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = np.random.default_rng(0)
    table = rng.multinomial(6, [0.5, 0.3, 0.2], size=40)
    assert fleiss_kappa(table) == pytest.approx(sm_fleiss(table), abs=1e-12)
    # raters vary by item: each item's share of agreeing pairs, by hand
    varied = np.array([[2, 0], [1, 1], [3, 0], [0, 2]])
    p_item = np.array([1.0, 0.0, 1.0, 1.0])
    shares = np.array([6, 3]) / 9
    chance = (shares ** 2).sum()
    assert fleiss_kappa(varied) == pytest.approx((p_item.mean() - chance)
                                                 / (1 - chance))


def test_krippendorff_alpha_of_krippendorffs_own_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha": 4 coders, 12
    # units, missing values; nominal alpha 0.743
    nan = -1
    coders = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
              [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
              [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
              [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    M = np.array(coders).T  # items x annotators, codes with -1 missing
    M = np.where(M > 0, M - 1, -1)
    assert krippendorff_alpha(M) == pytest.approx(0.743, abs=5e-4)


def _planted(n: int = 600, k: int = 3, seed: int = 0):
    """Five annotators of planted accuracy, each seeing 80% of the items; the
    last swaps labels 0 and 1 systematically."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    acc = [0.9, 0.85, 0.6, 0.55, 0.5]
    M = np.full((n, len(acc)), -1)
    for a, p in enumerate(acc):
        seen = rng.random(n) < 0.8
        wrong = (truth + rng.integers(1, k, n)) % k
        M[seen, a] = np.where(rng.random(n) < p, truth, wrong)[seen]
    M[:, 4] = np.where(M[:, 4] == 0, 1, np.where(M[:, 4] == 1, 0, M[:, 4]))
    return M, truth


def test_dawid_skene_recovers_planted_annotator_noise():
    M, truth = _planted()
    mv, _, _ = majority_vote(M, 3)
    ds = dawid_skene(M, 3)
    assert np.mean(ds.labels == truth) > np.mean(mv == truth) + 0.05
    # each annotator's estimated accuracy is near the one measured on truth
    for a in range(M.shape[1]):
        seen = M[:, a] >= 0
        real = np.mean(M[seen, a] == truth[seen])
        assert ds.accuracy()[a] == pytest.approx(real, abs=0.05), a
    # the swapping annotator's confusion matrix shows the swap
    assert ds.confusion[4][0, 1] > 0.4 and ds.confusion[4][1, 0] > 0.4
    # confident items are right more often than the others
    sure = ds.confidence > 0.9
    assert np.mean(ds.labels[sure] == truth[sure]) > np.mean(
        ds.labels[~sure] == truth[~sure])


def test_majority_vote_says_its_share_and_its_ties():
    M = np.array([[0, 0, 1], [1, 0, -1], [-1, -1, -1], [2, 2, 2]])
    label, conf, tie = majority_vote(M, 3)
    assert label.tolist() == [0, 0, -1, 2]
    assert conf.tolist() == pytest.approx([2 / 3, 0.5, 0.0, 1.0])
    assert tie.tolist() == [False, True, False, False]


def test_agreement_finds_the_careless_annotator_and_the_disputed_items():
    M, _ = _planted(n=300, seed=1)
    res = agreement(M, items=[f"i{i}" for i in range(300)],
                    annotators=["ann", "bob", "cid", "dee", "eve"],
                    labels=["a", "b", "c"])
    per = {p["annotator"]: p for p in res["per_annotator"]}
    assert per["ann"]["kappa_with_others"] > per["dee"]["kappa_with_others"] > \
        per["eve"]["kappa_with_others"]
    assert len(res["pairs"]) == 10
    conf = np.array(res["confusion"])
    assert np.array_equal(conf, conf.T)  # ordered pairs of votes, both ways
    ents = [q["entropy"] for q in res["queue"]]
    assert ents == sorted(ents, reverse=True) and res["disagreements"] > 0
    assert -1 < res["fleiss_kappa"] < 1 and -1 < res["krippendorff_alpha"] < 1


def _project(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    rows = ["post_id,text,topic"] + [f"p{i},text {i},{'ab'[i % 2]}"
                                     for i in range(40)]
    (root / "data" / "posts.csv").write_text("\n".join(rows) + "\n")
    (root / "mlsd.yaml").write_text(
        "name: lab\nproblem: {task: binary, target: topic, positive: a}\n"
        "sources:\n  posts: {path: data/posts.csv, key: post_id}\n"
        "features:\n  - {column: text, encode: tfidf}\n")
    return root


def test_the_store_imports_files_and_label_studio_and_keeps_one_label_a_source(
        tmp_path):
    folder = _project(tmp_path / "p")
    proj = Project.of(folder)
    (folder / "round1.csv").write_text(
        "post_id,label,annotator\np1,spam,ann\np1,ham,bob\np2,ham,ann\n"
        "p2,ham,bob\np3,spam,ann\np3,spam,bob\n,spam,ann\n")
    first = mlsd.pipeline.import_labels(proj, "round1.csv")
    assert (first["rows"], first["items"], first["sources"]) == (6, 3, ["ann",
                                                                        "bob"])
    assert first["notes"] == ["1 row(s) without an item or a label"]
    again = mlsd.pipeline.import_labels(proj, "round1.csv")
    assert again["written"] is False and again["version"] == first["version"]
    # ann changes her mind on p1: her label replaces the one she gave
    (folder / "fix.csv").write_text("post_id,label\np1,ham\n")
    mlsd.pipeline.import_labels(proj, "fix.csv", source="ann")
    # a Label Studio export: choices by a third annotator
    tasks = [{"id": 7, "data": {"post_id": "p1", "text": "t"}, "annotations": [
        {"completed_by": {"email": "cid@x"}, "created_at": "2026-11-01T10:00:00Z",
         "result": [{"type": "choices", "value": {"choices": ["ham"]}}]},
        {"completed_by": 3, "was_cancelled": True, "result": []}]},
        {"id": 8, "data": {"post_id": "p3"}, "annotations": [
            {"completed_by": {"email": "cid@x"},
             "result": [{"type": "choices", "value": {"choices": ["spam"]}}]}]}]
    (folder / "export.json").write_text(json.dumps(tasks))
    ls = mlsd.pipeline.import_labels(proj, "export.json")
    assert ls["format"] == "labelstudio" and ls["rows"] == 2
    assert ls["notes"] == ["1 cancelled annotation(s)"]
    from mlsd.trainingdata.labeling import read_labels

    stored = read_labels(proj.lake, "lab")
    got = {(r["item"], r["source"]): r["label"] for r in stored.to_pylist()}
    assert got[("p1", "ann")] == "ham" and got[("p1", "cid@x")] == "ham"
    assert stored.num_rows == 8
    agg = mlsd.pipeline.aggregate_labels(proj, "majority")
    assert {r["item"]: r["label"] for r in agg["rows"]} == {
        "p1": "ham", "p2": "ham", "p3": "spam"}
    ag = mlsd.pipeline.label_agreement(proj)
    assert ag["items"] == 3 and ag["annotators"] == 3
    with pytest.raises(DataError, match="not a column"):
        mlsd.pipeline.import_labels(proj, "round1.csv", label="nope")


def test_erasing_an_item_erases_its_labels(tmp_path):
    folder = _project(tmp_path / "p")
    proj = Project.of(folder)
    mlsd.pipeline.ingest(proj)
    (folder / "l.csv").write_text("post_id,label,annotator\np1,a,ann\np2,b,ann\n")
    mlsd.pipeline.import_labels(proj, "l.csv")
    res = mlsd.pipeline.delete_rows(proj, "posts", "post_id = 'p1'")
    assert res["labels"]["deleted"] == 1
    from mlsd.trainingdata.labeling import read_labels

    assert read_labels(proj.lake, "lab").column("item").to_pylist() == ["p2"]


def test_the_label_commands(tmp_path):
    from typer.testing import CliRunner

    from mlsd.cli import app

    folder = _project(tmp_path / "p")
    M, _ = _planted(n=60, seed=2)
    lines = ["post_id,label,annotator"] + [
        f"p{i},{'xyz'[M[i, a]]},a{a}" for i in range(60) for a in range(5)
        if M[i, a] >= 0]
    (folder / "votes.csv").write_text("\n".join(lines) + "\n")
    with chdir(folder):
        r = CliRunner().invoke(app, ["label", "import", "votes.csv"])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(app, ["label", "agreement", "--queue", "q.csv",
                                     "--json"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output)
        assert doc["annotators"] == 5 and (folder / "q.csv").is_file()
        r = CliRunner().invoke(app, ["label", "aggregate", "-o", "agg.csv"])
        assert r.exit_code == 0 and "estimated accuracy" in r.output, r.output
    assert (folder / "agg.csv").read_text().startswith("item,label,confidence")


def test_the_policy_takes_the_column_then_the_sure_store_labels(tmp_path):
    folder = tmp_path / "p"
    (folder / "data").mkdir(parents=True)
    rows = ["post_id,text,topic"] + [
        f"p{i},{'goal team' if i % 2 else 'vote law'} {i},"
        f"{'' if i < 30 else ('a' if i % 2 else 'b')}" for i in range(120)]
    (folder / "data" / "posts.csv").write_text("\n".join(rows) + "\n")
    votes = ["post_id,label,annotator"]
    for i in range(30):
        truth = "a" if i % 2 else "b"
        other = "b" if truth == "a" else "a"
        votes += [f"p{i},{truth},ann", f"p{i},{truth if i % 10 else other},bob",
                  f"p{i},{truth if i % 3 else other},cid"]
    votes.append("p999,a,ann")  # an item the data does not have
    (folder / "votes.csv").write_text("\n".join(votes) + "\n")
    spec = ("name: lab\nproblem: {task: binary, target: topic, positive: a}\n"
            "sources:\n  posts: {path: data/posts.csv, key: post_id}\n"
            "features:\n  - {column: text, encode: tfidf}\n"
            "model: {params: {n_estimators: 20}}\n")
    (folder / "mlsd.yaml").write_text(spec)
    proj = Project.of(folder)
    mlsd.pipeline.import_labels(proj, "votes.csv")
    plain = mlsd.run(proj, until="table")["training"]
    assert (plain["rows"], plain["unlabelled"], plain["labels"]) == (90, 30, None)
    policy = ["labels.policy=[{from: column}, {from: human, aggregate: majority, "
              "min_confidence: 0.7}]"]
    s = mlsd.run(proj.with_overrides(policy), until="train")
    lab = s["training"]["labels"]
    assert lab["by_rule"]["column"] == {"rows": 90}
    human = lab["by_rule"]["human"]
    # majority shares: 3/3 on most items, 2/3 (0.667, under 0.7) where bob or
    # cid dissent: i % 10 == 0 (3 items) or i % 3 == 0 (10 items), 1 both
    assert human["too_unsure"] == 12 and human["rows"] == 18
    assert human["items_not_in_data"] == 1 and lab["store_version"] == 0
    assert s["training"]["rows"] == 108
    ag = s["label_agreement"]  # in every run's summary while the store has votes
    assert ag["annotators"] == 3 and ag["items"] == 31 and len(ag["queue"]) <= 10
    table = proj.lake.read("training", "lab")
    came = dict(zip(table.column("post_id").to_pylist(),
                    table.column("_label_from").to_pylist(), strict=True))
    assert came["p1"] == "human" and came["p31"] == "column" and "p0" not in came
    manifest = json.loads((folder / s["paths"]["model"] / "manifest.json")
                          .read_text())
    assert manifest["lineage"]["training"]["labels"]["by_rule"]["human"]["rows"] == 18
    # leaving the careless annotator out, in the spec: every vote left agrees
    s2 = mlsd.run(proj.with_overrides([*policy, "labels.exclude=[cid]"]),
                  until="table")
    assert s2["training"]["labels"]["by_rule"]["human"]["rows"] == 27
    # removing bob from the store makes a new store version, a new table
    assert mlsd.pipeline.exclude_label_source(proj, "bob")["deleted"] == 30
    s3 = mlsd.run(proj.with_overrides(policy))
    assert s3["training"]["labels"]["store_version"] == 1
    html = (folder / s3["paths"]["report"]).read_text()
    assert "Labels: how far the annotators agree" in html
    assert "label-plot-0" in html and "The target by <code>labels.policy" in html


@pytest.mark.parametrize("labels, message", [
    ({"policy": [{"from": "human"}]}, "join the rows by their key"),
    ({"policy": [{"from": "column"}, {"from": "column"}]}, "each source"),
    ({"policy": [{"from": "column", "min_confidence": 0.5}]}, "no votes"),
    ({"order": ["low"]}, "two or more"),
])
def test_a_policy_that_cannot_work_is_refused(labels, message):
    from pydantic import ValidationError

    from mlsd.spec import ProjectSpec

    doc = {"name": "p", "problem": {"task": "binary", "target": "y"},
           "sources": {"s": {"path": "data/s.csv"}}, "features": [{"column": "x"}],
           "labels": labels}
    with pytest.raises(ValidationError, match=message):
        ProjectSpec.model_validate(doc)


def test_uncertainty_committee_and_diverse_batches():
    from mlsd.trainingdata.labeling._active import (
        choose,
        k_center_greedy,
        uncertainty,
        vote_entropy,
    )

    P = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0]])
    assert uncertainty(P, "least_confidence") == pytest.approx([0.1, 0.6, 0.5])
    assert uncertainty(P, "margin") == pytest.approx([0.15, 0.95, 1.0])
    ent = uncertainty(P, "entropy")
    assert ent[1] == max(ent) and ent[1] == pytest.approx(
        -sum(p * np.log(p) for p in P[1]))
    assert uncertainty(np.array([0.5, 0.99]), "margin") == pytest.approx([1.0, 0.02])
    votes = vote_entropy([np.array([0.9, 0.1]), np.array([0.8, 0.2]),
                          np.array([0.2, 0.3])])
    assert votes[0] == pytest.approx(-(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)))
    assert votes[1] == 0.0
    # two tight clusters: a diverse pair takes one point of each
    X = np.r_[np.random.default_rng(0).normal(0, 0.01, (20, 2)),
              np.random.default_rng(1).normal(5, 0.01, (5, 2))]
    pair = k_center_greedy(X, 2)
    assert {int(i >= 20) for i in pair} == {0, 1}
    # the big cluster doubts most: uncertainty alone takes two of it, a
    # diverse batch (k-center among the 10 x 2 most uncertain) one of each
    X3, scores = X[5:], np.r_[np.full(15, 0.9), np.full(5, 0.8)]
    assert all(i < 15 for i in choose(scores, 2))
    assert {int(i >= 15) for i in choose(scores, 2, X=X3, diverse=True)} == {0, 1}


@pytest.mark.parametrize("data, start, batch", [("breast_cancer", 10, 5),
                                                ("digits", 30, 20)])
def test_margin_sampling_beats_random_in_a_seeded_simulation(data, start, batch):
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    from mlsd.trainingdata.labeling._active import simulate

    X, y = getattr(datasets, f"load_{data}")(return_X_y=True)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    cut = int(len(y) * 0.7)

    class _Model:
        def __init__(self, m):
            self.m = m

        def predict(self, X):
            return self.m.predict_proba(X)

    def fit(Xf, yf, seed):
        return _Model(LogisticRegression(max_iter=300).fit(Xf, yf))

    res = simulate(X[:cut], y[:cut], fit=fit, X_test=X[cut:], y_test=y[cut:],
                   score=lambda yt, P: accuracy_score(yt, P.argmax(axis=1)),
                   strategies=("margin", "random"), start=start, batch=batch,
                   rounds=6)
    mean = res["mean_score"]  # the mean over the curve: the area under it
    assert mean["margin"] > mean["random"] + 0.01, mean
    assert [p["labels"] for p in res["curves"]["random"]] == list(
        range(start, start + 7 * batch, batch))


def _topics(folder: Path, *, name: str, n: int, unlabelled: int, filler: list,
            gap: float, seed: int, policy: str) -> tuple[Path, dict]:
    """Posts on two topics (a: sport words, b: politics words; a length whose
    means are ``gap`` apart), the first ``unlabelled`` without a topic; the
    spec's labels.policy is ``policy``. Returns the folder and the truth."""
    (folder / "data").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows, truth = ["post_id,text,length,topic"], {}
    for i in range(n):
        t = "a" if rng.random() < 0.5 else "b"
        words = ["goal", "team", "match"] if t == "a" else ["vote", "law", "party"]
        text = " ".join(rng.choice(words + filler, size=4))
        truth[f"p{i}"] = t
        rows.append(f"p{i},{text},{rng.normal(10 if t == 'a' else 10 + gap):.3f},"
                    f"{'' if i < unlabelled else t}")
    (folder / "data" / "posts.csv").write_text("\n".join(rows) + "\n")
    (folder / "mlsd.yaml").write_text(
        f"name: {name}\nproblem: {{task: binary, target: topic, positive: a}}\n"
        "sources:\n  posts: {path: data/posts.csv, key: post_id}\n"
        "features:\n  - {column: text, encode: tfidf}\n  - {column: length}\n"
        f"model: {{kind: linear}}\nlabels: {{policy: {policy}}}\n")
    return folder, truth


def test_the_next_items_to_label_go_out_and_come_back_as_labels(tmp_path):
    folder, _ = _topics(tmp_path / "p", name="lab", n=240, unlabelled=60,
                        filler=["news", "today"], gap=1, seed=3,
                        policy="[{from: column}, {from: human}]")
    proj = Project.of(folder)
    mlsd.run(proj, until="train")
    doc = mlsd.pipeline.next_to_label(proj, n=8, strategy="least_confidence")
    assert doc["unlabelled"] == 60 and len(doc["items"]) == 8
    unc = [it["uncertainty"] for it in doc["items"]]
    assert unc == sorted(unc, reverse=True)
    assert all(int(it["item"][1:]) < 60 for it in doc["items"])
    diverse = mlsd.pipeline.next_to_label(proj, n=8, diverse=True)
    assert len({it["item"] for it in diverse["items"]}) == 8
    tasks_path = mlsd.pipeline.write_next(doc, folder / "next.json")
    tasks = json.loads(tasks_path.read_text())
    assert tasks[0]["data"]["post_id"] == doc["items"][0]["item"]
    assert tasks[0]["predictions"][0]["model_version"] == doc["model"]
    # an annotator accepts the pre-annotations in Label Studio, and the export
    # comes back into the store, then into the training table
    for t in tasks:
        t["annotations"] = [{"completed_by": {"email": "ann@x"},
                             "result": t["predictions"][0]["result"]}]
    (folder / "done.json").write_text(json.dumps(tasks))
    assert mlsd.pipeline.import_labels(proj, "done.json")["rows"] == 8
    s = mlsd.run(proj, until="table")
    assert s["training"]["labels"]["by_rule"]["human"]["rows"] == 8
    mlsd.pipeline.write_next(doc, folder / "next.csv")
    assert (folder / "next.csv").read_text().splitlines()[0].startswith(
        '"item","uncertainty","predicted","confidence"')
    sim = mlsd.pipeline.simulate_active(proj, strategies=("margin", "random"),
                                        start=10, batch=10, rounds=2)
    assert set(sim["curves"]) == {"margin", "random"} and sim["metric"] == "pr_auc"
    # the same simulation in every run, drawn in the report
    run = mlsd.run(proj.with_overrides([
        "labels.simulate={start: 10, batch: 10, rounds: 2}"]))
    assert set(run["active_learning"]["curves"]) == {"margin", "entropy", "random"}
    html = (folder / run["paths"]["report"]).read_text()
    assert "Active learning, simulated" in html and "active-plot" in html
    from typer.testing import CliRunner

    from mlsd.cli import app

    with chdir(folder):
        r = CliRunner().invoke(app, ["label", "next", "-n", "3", "-o", "n.jsonl",
                                     "--json"])
        assert r.exit_code == 0, r.output
        assert len(json.loads(r.output)["items"]) == 3
        r = CliRunner().invoke(app, ["label", "simulate", "--start", "10",
                                     "--batch", "10", "--rounds", "1"])
        assert r.exit_code == 0 and "random" in r.output, r.output
    assert len((folder / "n.jsonl").read_text().splitlines()) == 3


def test_items_go_out_as_label_studio_tasks_and_come_back(tmp_path):
    from typer.testing import CliRunner

    from mlsd.cli import app

    folder, truth = _topics(tmp_path / "p", name="lab", n=200, unlabelled=50,
                            filler=["news"], gap=1, seed=4,
                            policy="[{from: column}, {from: human}]")
    proj = Project.of(folder)
    mlsd.pipeline.ingest(proj)
    # before any model: tasks without pre-annotations
    bare = mlsd.pipeline.export_to_label(proj, n=5)
    assert bare["model"] is None and bare["exported"] == 5 and bare["rows"] == 50
    mlsd.pipeline.write_next(bare, folder / "bare.json")
    assert all("predictions" not in t for t in json.loads(
        (folder / "bare.json").read_text()))
    mlsd.run(proj, until="train")
    with chdir(folder):
        r = CliRunner().invoke(app, ["label", "export", "-o", "tasks.json",
                                     "--from-name", "topic", "--to-name", "post"])
        assert r.exit_code == 0, r.output
        assert "50 of 50 unlabelled items" in r.output
    tasks = json.loads((folder / "tasks.json").read_text())
    assert len(tasks) == 50 and {t["data"]["post_id"] for t in tasks} == {
        f"p{i}" for i in range(50)}
    pre = tasks[0]["predictions"][0]
    assert pre["result"][0]["from_name"] == "topic"
    assert pre["result"][0]["to_name"] == "post"
    assert pre["result"][0]["value"]["choices"][0] in ("a", "b")
    assert 0.5 <= pre["score"] <= 1
    right = np.mean([t["predictions"][0]["result"][0]["value"]["choices"][0]
                     == truth[t["data"]["post_id"]] for t in tasks])
    assert right > 0.7  # the model's guesses, worth correcting rather than typing
    # two annotators label them in Label Studio; both exports come back
    for who in ("ann", "bob"):
        for t in tasks:
            t["annotations"] = [{"completed_by": {"email": f"{who}@x"}, "result": [{
                "from_name": "topic", "to_name": "post", "type": "choices",
                "value": {"choices": [truth[t["data"]["post_id"]]]}}]}]
        (folder / f"{who}.json").write_text(json.dumps(tasks))
        assert mlsd.pipeline.import_labels(proj, f"{who}.json")["rows"] == 50
    s = mlsd.run(proj, until="table")
    assert s["training"]["labels"]["by_rule"]["human"]["rows"] == 50
    with pytest.raises(DataError, match="nothing to export"):
        mlsd.pipeline.export_to_label(proj)
    every = mlsd.pipeline.export_to_label(proj, labelled=True, predictions=False)
    assert every["exported"] == 200 and every["model"] is None


def _weak_project(root: Path, n: int = 900, seed: int = 0) -> tuple[Path, dict]:
    """Posts whose topic is known on a third of them; hidden truth for all.
    Keyword and threshold rules are right most of the time; one misleading
    word (right 35% of the time) is written as three copies of one rule."""
    rng = np.random.default_rng(seed)
    (root / "data").mkdir(parents=True)
    rows, truth = ["post_id,text,score,topic"], {}
    for i in range(n):
        t = "a" if rng.random() < 0.5 else "b"
        words = ["news", "today", "post"]
        if rng.random() < (0.5 if t == "a" else 0.05):
            words.append("alpha")
        if rng.random() < (0.05 if t == "a" else 0.5):
            words.append("omega")
        if rng.random() < (0.35 if t == "a" else 0.65) * 0.6:
            words.append("gamma")
        x = rng.normal(1.0 if t == "a" else -1.0, 1.0)
        truth[f"p{i}"] = t
        rows.append(f"p{i},{' '.join(words)},{x:.4f},{t if i % 3 == 0 else ''}")
    (root / "data" / "posts.csv").write_text("\n".join(rows) + "\n")
    (root / "mlsd.yaml").write_text(
        "name: weak\nproblem: {task: binary, target: topic, positive: a}\n"
        "sources:\n  posts: {path: data/posts.csv, key: post_id}\n"
        "features:\n  - {column: text, encode: tfidf}\n  - {column: score}\n"
        "model: {kind: linear}\n"
        "labels:\n  functions:\n"
        "    alpha: {label: a, column: text, keywords: [alpha]}\n"
        "    omega: {label: b, column: text, regex: '\\bomega\\b'}\n"
        "    high: {label: a, column: score, above: 1.5}\n"
        "    low: {label: b, column: score, below: -1.5}\n"
        "    gamma1: {label: a, column: text, keywords: [gamma]}\n"
        "    gamma2: {label: a, column: text, regex: gamma}\n"
        "    gamma3: {label: a, where: \"text LIKE '%gamma%'\"}\n")
    return root, truth


def test_the_label_model_outvotes_copies_of_a_misleading_rule(tmp_path):
    folder, truth = _weak_project(tmp_path / "p")
    proj = Project.of(folder)
    mlsd.pipeline.ingest(proj)
    rep = mlsd.pipeline.apply_label_functions(proj)
    per = {f["function"]: f for f in rep["functions"]}
    assert per["alpha"]["accuracy"] > 0.85 and per["gamma1"]["accuracy"] < 0.5
    assert per["gamma1"]["coverage"] == per["gamma3"]["coverage"]
    assert rep["merged"] == [["gamma1", "gamma2", "gamma3"]]
    assert rep["label_model_accuracy"] > rep["majority_accuracy"] + 0.05, rep
    # the policy: the known topics, then the label model where it is sure
    s = mlsd.run(proj.with_overrides([
        "labels.policy=[{from: column}, {from: function, min_confidence: 0.8}]"]),
        until="table")
    got = s["training"]["labels"]["by_rule"]["function"]
    assert got["rows"] > 200
    table = proj.lake.read("training", "weak")
    fn = pc_equal(table, "_label_from", "function")
    labels = table.filter(fn)
    right = np.mean([truth[k] == v for k, v in zip(
        labels.column("post_id").to_pylist(), labels.column("topic").to_pylist(),
        strict=True)])
    assert right > 0.85
    # applied again with a rule removed: its votes leave the store
    from mlsd.trainingdata.labeling import read_labels

    mlsd.pipeline.apply_label_functions(proj.with_overrides(
        ["labels.functions.gamma3={label: b, column: text, keywords: [zzz]}"]))
    stored = read_labels(proj.lake, "weak", kinds=("function",))
    assert "gamma3" not in set(stored.column("source").to_pylist())


def pc_equal(table, column, value):
    import pyarrow.compute as pc

    return pc.equal(table.column(column), value)


def test_a_python_labeling_function():
    import pyarrow as pa

    from mlsd.trainingdata.labeling import apply_functions, labeling_function

    @labeling_function(label="spam")
    def shouting(row):
        return row["text"].isupper()

    @labeling_function()
    def by_length(row):
        return "ham" if len(row["text"]) > 10 else None

    rows = pa.table({"text": ["BUY NOW", "a long quiet text", "short"]})
    votes = apply_functions(rows, {}, [shouting, by_length])
    assert votes == {"shouting": ["spam", None, None],
                     "by_length": [None, "ham", None]}


@pytest.mark.parametrize("fn, message", [
    ({"label": "a", "column": "t"}, "give one rule"),
    ({"label": "a", "keywords": ["x"]}, "reads a `column`"),
    ({"label": "a", "column": "t", "regex": "("}, "regex"),
    ({"label": "a", "column": "t", "where": "x > 1"}, "`column` is not used"),
])
def test_a_labeling_function_that_cannot_work_is_refused(fn, message):
    from pydantic import ValidationError

    from mlsd.spec import LabelsSpec

    with pytest.raises(ValidationError, match=message):
        LabelsSpec.model_validate({"functions": {"f": fn}})


@pytest.mark.parametrize("method", ["self_training", "spreading"])
def test_pseudo_labels_train_and_never_evaluate(tmp_path, method):
    folder, truth = _topics(tmp_path / "p", name="semi", n=300, unlabelled=150,
                            filler=["news"], gap=2, seed=4,
                            policy="[{from: column}, {from: model, "
                                   "min_confidence: 0.8}]")
    proj = Project.of(folder)
    mlsd.run(proj, until="train")
    res = mlsd.pipeline.pseudo_label(proj, method=method, threshold=0.8, copies=2)
    assert res["unlabelled"] == 150 and res["pseudo_labelled"] > 50, res
    assert res["source"].startswith(f"{method}:m")
    from mlsd.trainingdata.labeling import read_labels

    stored = read_labels(proj.lake, "semi", kinds=("model",)).to_pylist()
    right = np.mean([truth[r["item"]] == r["label"] for r in stored])
    assert right > 0.9 and all(r["confidence"] >= 0.8 for r in stored)
    s = mlsd.run(proj, until="split")
    assert s["training"]["labels"]["by_rule"]["model"]["rows"] == len(stored)
    left = s["split"]["left_out"]["weakly_labelled"]
    assert left > 0  # those the split put in valid or test
    split = proj.lake.read("splits", "semi")
    table = proj.lake.read("training", "semi")
    came = dict(zip(table.column("_row").to_pylist(),
                    table.column("_label_from").to_pylist(), strict=True))
    evaluated = [came[r] for r, sp_ in zip(split.column("_row").to_pylist(),
                                           split.column("_split").to_pylist(),
                                           strict=True) if sp_ in ("valid", "test")]
    assert evaluated and "model" not in evaluated
    # a second pass replaces the first's pseudo-labels
    mlsd.pipeline.pseudo_label(proj, method=method, threshold=0.95)
    again = read_labels(proj.lake, "semi", kinds=("model",)).num_rows
    assert again <= len(stored)


def test_natural_labels_from_feedback_within_the_window(tmp_path):
    folder = _project(tmp_path / "p")
    (folder / "mlsd.yaml").write_text((folder / "mlsd.yaml").read_text()
                                      + "labels:\n  natural: {window: 2d, "
                                        "event: purchase}\n")
    proj = Project.of(folder)
    log = ["request_id,post_id,predicted_at,text,score"]
    log += ["r1,p1,2026-11-01T10:00:00Z,t1,0.9",   # bought 5 h later: positive
            "r2,p2,2026-11-01T10:00:00Z,t2,0.2",   # clicked only: negative
            "r3,p3,2026-11-01T10:00:00Z,t3,0.7",   # bought after 3 days: negative
            "r4,p4,2026-11-09T10:00:00Z,t4,0.6",   # window still open
            "r5,p5,2026-11-09T10:00:00Z,t5,0.8"]   # bought already: positive
    (folder / "log.csv").write_text("\n".join(log) + "\n")
    events = ["request_id,event,at", "r1,click,2026-11-01T11:00:00Z",
              "r1,purchase,2026-11-01T15:00:00Z", "r2,click,2026-11-01T12:00:00Z",
              "r3,purchase,2026-11-04T10:00:00Z", "r5,purchase,2026-11-09T12:00:00Z",
              "r9,purchase,2026-11-01T12:00:00Z"]
    (folder / "events.csv").write_text("\n".join(events) + "\n")
    logged = mlsd.pipeline.import_prediction_log(proj, "log.csv",
                                                 outputs=["score"])
    assert logged["rows"] == 5
    assert mlsd.pipeline.import_prediction_log(proj, "log.csv")["written"] is False
    assert mlsd.pipeline.import_feedback(proj, "events.csv")["events"] == {
        "click": 2, "purchase": 4}
    res = mlsd.pipeline.natural_labels(proj, now="2026-11-10T00:00:00Z")
    assert (res["labelled"], res["positives"], res["still_open"]) == (4, 2, 1)
    assert res["events_outside_window"] == 1
    loop = res["feedback_loop_seconds"]
    assert loop["positives_median"] == pytest.approx((5 * 3600 + 2 * 3600) / 2)
    from mlsd.trainingdata.labeling import read_labels

    got = {r["item"]: r["label"] for r in read_labels(
        proj.lake, "lab", kinds=("natural",)).to_pylist()}
    assert got == {"p1": "true", "p2": "false", "p3": "false", "p5": "true"}
    # later, the open window closes without a purchase: p4 becomes negative
    later = mlsd.pipeline.natural_labels(proj, now="2026-11-20T00:00:00Z")
    assert later["labelled"] == 5 and later["still_open"] == 0
    log_table = proj.lake.read("predictions", "lab")
    assert json.loads(log_table.column("outputs")[0].as_py()) == {"score": 0.9}
    assert "text" in json.loads(log_table.column("inputs")[0].as_py())
    # a score of weighted events instead of one event
    spec = proj.with_overrides(["labels.natural={window: 2d, weights: {click: 0.4,"
                                " purchase: 1}, threshold: 0.5}"])
    scored = mlsd.pipeline.natural_labels(spec, now="2026-11-20T00:00:00Z")
    assert scored["positives"] == 2  # r1 (0.4 + 1) and r5 (1); r2's click is 0.4
    # erasing an item erases its logged predictions and their feedback too
    mlsd.pipeline.ingest(proj)
    res = mlsd.pipeline.delete_rows(proj, "posts", "post_id = 'p1'")
    assert res["prediction_log"]["deleted"] == 1 and res["feedback"]["deleted"] == 2
    assert "r1" not in proj.lake.read("feedback", "lab").column(
        "request_id").to_pylist()


def test_a_run_imports_applies_and_labels_by_itself(tmp_path):
    """labels.imports and a {from: function} rule: `mlsd run` alone imports
    the files, refreshes the functions' votes and builds the target; a second
    run writes nothing new."""
    folder, truth = _weak_project(tmp_path / "p", n=300)
    votes = ["post_id,label,annotator"] + [
        f"p{i},{truth[f'p{i}']},{who}" for i in range(1, 60, 3) for who in ("x", "y")]
    (folder / "labels").mkdir()
    (folder / "labels" / "hand.csv").write_text("\n".join(votes) + "\n")
    with open(folder / "mlsd.yaml", "a") as fh:
        fh.write("  imports: [{path: labels/hand.csv}]\n"
                 "  policy: [{from: column}, {from: human},"
                 " {from: function, min_confidence: 0.8}]\n")
    proj = Project.of(folder)
    s = mlsd.run(proj, until="table")
    lab = s["training"]["labels"]
    assert lab["prepared"]["imports"][0]["rows"] == 40
    assert lab["prepared"]["functions"]["merged"] == [["gamma1", "gamma2", "gamma3"]]
    assert lab["by_rule"]["human"]["rows"] > 0
    assert lab["by_rule"]["function"]["rows"] > 0
    version = proj.lake.version("training", "weak")
    again = mlsd.run(proj, until="table")
    assert again["training"]["labels"]["prepared"]["imports"][0]["written"] is False
    assert proj.lake.version("training", "weak") == version
    from pydantic import ValidationError

    from mlsd.spec import LabelImportSpec

    with pytest.raises(ValidationError, match="inside the project"):
        LabelImportSpec(path="../elsewhere.csv")


def test_the_call_center_example_builds_its_target_from_three_sources(tmp_path):
    from mlsd.examples import write

    folder = tmp_path / "calls"
    manifest = write("call-center", folder, n=1200, hand=200)
    assert manifest["hand_labelled"] == 200
    s = mlsd.run(Project.of(folder), until="train")
    by = s["training"]["labels"]["by_rule"]
    assert by["column"]["rows"] == manifest["routed"]
    assert by["human"]["rows"] > 150 and by["function"]["rows"] > 300
    per = {p["annotator"]: p["kappa_with_others"]
           for p in s["label_agreement"]["per_annotator"]}
    assert per["ana"] > per["ben"] > per["carl"]  # as planted
    merged = s["training"]["labels"]["prepared"]["functions"]["merged"]
    assert merged == [["payment_sales", "payment_sales_again"]]
    truth = json.loads((folder / "data" / "truth.json").read_text())
    table = Project.of(folder).lake.read("training", "call-center")
    right = {}
    for k, v, f in zip(table.column("request_id").to_pylist(),
                       table.column("department").to_pylist(),
                       table.column("_label_from").to_pylist(), strict=True):
        right.setdefault(f, []).append(truth[k] == v)
    assert np.mean(right["human"]) > 0.85 and np.mean(right["function"]) > 0.7
    assert s["model"]["beats_baselines"] is True
    # the rules' labels train; valid and test hold routed and hand labels only
    assert s["split"]["left_out"]["weakly_labelled"] > 0
    # word vectors pretrained on all the text, and active learning replayed
    names = {f["feature"] for f in s["features"]["table"]}
    assert {"text:embedding", "text:tfidf", "channel"} <= names  # told apart
    assert {"margin", "random"} <= set(s["active_learning"]["curves"])


def test_training_on_probabilistic_labels_weighs_each_row_by_its_confidence(
        tmp_path):
    folder, truth = _weak_project(tmp_path / "p", n=600)
    proj = Project.of(folder).with_overrides([
        "labels.policy=[{from: column}, {from: function, min_confidence: 0.6}]"])
    hard = mlsd.run(proj, until="train")
    table = proj.lake.read("training", "weak")
    conf = dict(zip(table.column("_label_from").to_pylist(),
                    table.column("_label_confidence").to_pylist(), strict=False))
    assert conf["column"] == 1.0 and 0.6 <= conf["function"] <= 1.0
    soft = mlsd.run(proj.with_overrides(["labels.weigh_by_confidence=true"]),
                    until="train")
    assert soft["model"]["model_id"] != hard["model"]["model_id"]
    manifest = json.loads((folder / soft["paths"]["model"] / "manifest.json")
                          .read_text())
    assert manifest["training_rows"]["sample_weights"] is True
    # the same rows, weighed otherwise: both are measured on the same test rows
    assert soft["split"]["sizes"] == hard["split"]["sizes"]
