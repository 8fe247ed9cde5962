"""Pretrained word vectors as a feature (transfer learning): the mean of the
vectors of a text's words, kept in the feature state so the model serves
without the file, and vectors pretrained on the project's own text."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

import mlsd
from mlsd.engine import DuckDBEngine
from mlsd.errors import MlsdError
from mlsd.features import EmbeddingFeature, FeaturePipeline
from mlsd.pipeline import Project
from mlsd.spec import FeatureSpec


def _fit(t, table: pa.Table):
    table = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    engine = DuckDBEngine(threads=1)
    return t.analyze(engine, engine.from_arrow(table))


def test_a_text_is_the_mean_of_its_words_vectors(tmp_path):
    vec = tmp_path / "v.vec"
    vec.write_text("4 2\ngood 1 0\nbad -1 0\nmovie 0 1\nunused 5 5\n")
    train = pa.table({"text": ["Good movie", "bad bad", None, "unknown words",
                               "good"]})
    t = _fit(EmbeddingFeature(column="text", vectors=str(vec)), train)
    assert t.state_["words"] == ["bad", "good", "movie"]  # only training words
    assert t.state_["coverage"] == round(5 / 7, 4)  # of the training words
    X = t.apply(train).toarray()
    assert X.tolist() == [[0.5, 0.5], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.0],
                          [1.0, 0.0]]
    for i, row in enumerate(train.to_pylist()):  # one row as the batch
        idx, val = t.apply_row(row)
        dense = np.zeros(2)
        dense[idx] = val
        assert dense.tolist() == X[i].tolist()
    assert t.names() == ["text~v0", "text~v1"]
    # the state carries the vectors: the model serves without the file
    pipe = FeaturePipeline(transforms=[
        EmbeddingFeature(column="text", vectors=str(vec))])
    engine = DuckDBEngine(threads=1)
    pipe.analyze(engine, engine.from_arrow(train.append_column(
        "_row", pa.array(np.arange(train.num_rows)))))
    text = pipe.to_json()
    vec.unlink()
    again = FeaturePipeline.from_json(text)
    assert np.array_equal(again.apply(train).toarray(), X)
    assert json.loads(text)  # plain JSON


def test_a_broken_vectors_file_is_named(tmp_path):
    bad = tmp_path / "bad.vec"
    bad.write_text("good 1 0\nbad -1\n")
    with pytest.raises(MlsdError, match="line 2: 1 numbers where"):
        _fit(EmbeddingFeature(column="text", vectors=str(bad)),
             pa.table({"text": ["good bad"]}))
    none = tmp_path / "none.vec"
    none.write_text("other 1 0\n")
    with pytest.raises(MlsdError, match="none of the training words"):
        _fit(EmbeddingFeature(column="text", vectors=str(none)),
             pa.table({"text": ["good bad"]}))


@pytest.mark.parametrize("feature, message", [
    ({"column": "text", "encode": "embedding"}, "name the `vectors` file"),
    ({"column": "text", "encode": "embedding", "vectors": "../v.vec"},
     "inside the project"),
    ({"column": "text", "encode": "tfidf", "vectors": "v.vec"}, "does not apply"),
])
def test_an_embedding_that_cannot_work_is_refused(feature, message):
    with pytest.raises(ValidationError, match=message):
        FeatureSpec.model_validate(feature)


def test_vectors_pretrained_on_the_projects_text_feed_a_run(tmp_path):
    folder = tmp_path / "p"
    (folder / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    topics = {"a": ["goal", "team", "match", "score", "league"],
              "b": ["vote", "law", "party", "senate", "election"]}
    rows = ["post_id,text,topic"]
    for i in range(400):
        t = "a" if rng.random() < 0.5 else "b"
        text = " ".join(rng.choice(topics[t] + ["news", "today"], size=5))
        rows.append(f"p{i},{text},{t if i % 4 == 0 else ''}")  # a quarter labelled
    (folder / "data" / "posts.csv").write_text("\n".join(rows) + "\n")
    spec = ("name: emb\nproblem: {task: binary, target: topic, positive: a}\n"
            "sources:\n  posts: {path: data/posts.csv, key: post_id}\n"
            "features:\n  - {column: text, encode: embedding, vectors: "
            "models/text.vec}\nmodel: {kind: linear}\n")
    (folder / "mlsd.yaml").write_text(spec)
    proj = Project.of(folder)
    with pytest.raises(mlsd.errors.SpecError, match="features pretrain"):
        mlsd.run(proj)  # the file does not exist yet: said before any stage
    mlsd.pipeline.ingest(proj)
    res = mlsd.pipeline.pretrain_embeddings(proj, "text", "models/text.vec", dim=3)
    assert res["words"] == 12 and res["texts"] == 400  # unlabelled texts too
    vec = {ln.split()[0]: np.array(ln.split()[1:], dtype=float) for ln in
           (folder / "models" / "text.vec").read_text().splitlines()[1:]}

    def cos(a, b):
        return vec[a] @ vec[b] / np.linalg.norm(vec[a]) / np.linalg.norm(vec[b])

    assert cos("goal", "team") > cos("goal", "vote") + 0.3  # words used alike
    s = mlsd.run(proj)
    assert s["model"]["metrics"]["model"]["test"]["pr_auc"] > 0.9
    table = {f["feature"]: f for f in s["features"]["table"]}
    assert table["text"]["width"] == 3
    with pytest.raises(mlsd.errors.LakeError, match="escapes"):
        mlsd.pipeline.pretrain_embeddings(proj, "text", "../out.vec")


def test_two_features_of_one_column_are_told_apart(tmp_path):
    from mlsd.features._pipeline import feature_labels
    from mlsd.pipeline import write_pruned_spec

    assert feature_labels([("text", "tfidf"), ("text", "embedding"), ("x", "numeric"),
                           ("y", "bins"), ("y", "bins")]) == [
        "text:tfidf", "text:embedding", "x", "y:bins", "y:bins'"]
    (tmp_path / "mlsd.yaml").write_text(
        "name: two\nproblem: {task: binary, target: t}\n"
        "sources:\n  s: {path: s.csv}\n"
        "features:\n  - {column: text, encode: tfidf}\n"
        "  - {column: text, encode: embedding, vectors: v.vec}\n  - {column: x}\n")
    out = write_pruned_spec(Project.of(tmp_path), ["text:embedding"],
                            tmp_path / "pruned.yaml")
    kept = out.read_text().split("features:")[1]
    assert "embedding" not in kept and "tfidf" in kept and "x" in kept
