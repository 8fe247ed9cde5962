"""Pretrained sentence encoders as a feature: a model2vec folder or an ONNX
encoder, each built here (tiny, nothing downloaded), cached by content hash,
carried inside the model artifact so it serves without the project."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest

import mlsd
from mlsd.engine import DuckDBEngine
from mlsd.errors import MlsdError
from mlsd.features import EmbeddingFeature, FeaturePipeline, _encoders
from mlsd.models import ModelArtifact
from mlsd.pipeline import Project

WORDS = ["good", "bad", "movie", "film", "plot", "boring", "great", "awful"]


def _tokenizer():
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {"[PAD]": 0, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(WORDS)}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def _vectors(dim=4, seed=0):
    return np.random.default_rng(seed).normal(size=(len(WORDS) + 2, dim)
                                              ).astype(np.float32)


def model2vec_folder(path, seed=0, sentiment=False):
    """A model2vec folder; with ``sentiment`` its first number says whether a
    word is praise (+3) or blame (-3), as a pretrained model would know."""
    from model2vec import StaticModel

    E = _vectors(seed=seed)
    if sentiment:
        E[:, 0] = [0, 0] + [{"good": 3, "great": 3, "bad": -3, "awful": -3,
                             "boring": -3}.get(w, 0) for w in WORDS]
    StaticModel(vectors=E, tokenizer=_tokenizer(),
                normalize=False).save_pretrained(str(path))
    return path


def onnx_folder(path, pooled=False):
    """An ONNX 'encoder': token vectors are rows of a table, masked; with
    ``pooled`` it returns their mean itself (batch x dim)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    E = _vectors(dim=3, seed=1)
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["g"], axis=0),
             helper.make_node("Cast", ["attention_mask"], ["m"],
                              to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axis"], ["m3"]),
             helper.make_node("Mul", ["g", "m3"], ["tokens"])]
    out = "tokens"
    if pooled:
        nodes += [helper.make_node("ReduceSum", ["tokens", "one"], ["s"],
                                   keepdims=0),
                  helper.make_node("ReduceSum", ["m3", "one"], ["n"], keepdims=0),
                  helper.make_node("Div", ["s", "n"], ["pooled"])]
        out = "pooled"
    graph = helper.make_graph(
        nodes, "enc",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, None]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                       [None, None])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(E, "E"),
                     numpy_helper.from_array(np.array([-1], np.int64), "axis"),
                     numpy_helper.from_array(np.array([1], np.int64), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"))
    _tokenizer().save(str(path / "tokenizer.json"))
    return path, E


def _fit(t, table: pa.Table):
    table = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    engine = DuckDBEngine(threads=1)
    return t.analyze(engine, engine.from_arrow(table))


TEXTS = pa.table({"text": ["Good movie", "bad plot bad", None, "", "zzz unknown",
                           "great film"]})


def _rows_equal_batch(t, table, X):
    for i, row in enumerate(table.to_pylist()):
        idx, val = t.apply_row(row)
        dense = np.zeros(X.shape[1])
        dense[idx] = val
        np.testing.assert_allclose(dense, X[i], rtol=1e-6, atol=1e-7)


def test_a_model2vec_folder_encodes_as_model2vec_does(tmp_path):
    from model2vec import StaticModel

    folder = model2vec_folder(tmp_path / "m2v")
    t = _fit(EmbeddingFeature(column="text", vectors=str(folder)), TEXTS)
    s = t.state_
    assert s["encoder"] == "model2vec" and s["dim"] == 4
    assert set(s["files"]) == {"config.json", "model.safetensors", "tokenizer.json"}
    X = t.apply(TEXTS).toarray()
    ref = StaticModel.from_pretrained(str(folder)).encode(
        ["Good movie", "bad plot bad", "great film"])
    np.testing.assert_allclose(X[[0, 1, 5]], ref, rtol=1e-6)
    E = _vectors()
    np.testing.assert_allclose(X[0], (E[2] + E[4]) / 2, rtol=1e-6)  # good, movie
    assert not X[2].any() and not X[3].any()  # missing and empty: zeros
    _rows_equal_batch(t, TEXTS, X)
    assert t.names() == [f"text~v{i}" for i in range(4)]
    assert t.notes()["encoder"] == "model2vec"


@pytest.mark.parametrize("pooled", [False, True])
def test_an_onnx_encoder_is_mean_pooled_over_the_attention_mask(tmp_path, pooled):
    folder, E = onnx_folder(tmp_path / "onnx", pooled=pooled)
    t = _fit(EmbeddingFeature(column="text", vectors=str(folder)), TEXTS)
    assert t.state_["encoder"] == "onnx" and t.state_["dim"] == 3
    X = t.apply(TEXTS).toarray()
    # by hand: the mean of the tokens' rows, padding left out
    np.testing.assert_allclose(X[0], (E[2] + E[4]) / 2, rtol=1e-6)
    np.testing.assert_allclose(X[1], (2 * E[3] + E[6]) / 3, rtol=1e-6)
    np.testing.assert_allclose(X[4], (E[1] + E[1]) / 2, rtol=1e-6)  # unknown tokens
    assert not X[2].any() and not X[3].any()
    _rows_equal_batch(t, TEXTS, X)


def test_a_folder_is_known_by_its_content_and_texts_by_their_hash(tmp_path,
                                                                  monkeypatch):
    folder = model2vec_folder(tmp_path / "m2v")
    cache = tmp_path / "cache"
    t = EmbeddingFeature(column="text", vectors=str(folder))
    t.cache_dir = str(cache)
    X = _fit(t, TEXTS).apply(TEXTS).toarray()
    parts = list(cache.glob("*/part-*.parquet"))
    assert len(parts) == 1 and parts[0].parent.name == t.state_["sha256"][:16]
    # another process: every text is read from the cache, the model never runs
    again = FeaturePipeline.from_json(_state_json(t))
    again.transforms[0].cache_dir = str(cache)
    calls = []
    real = _encoders.Encoder.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        inner = self._encode
        self._encode = lambda texts: calls.append(list(texts)) or inner(texts)
    monkeypatch.setattr(_encoders.Encoder, "__init__", spy)
    np.testing.assert_allclose(again.apply(TEXTS).toarray(), X, rtol=1e-6)
    assert calls == []
    # a changed folder is refused, with both hashes' heads
    model2vec_folder(folder, seed=5)
    fresh = FeaturePipeline.from_json(_state_json(t))
    with pytest.raises(MlsdError, match="changed since the features were analysed"):
        fresh.apply(TEXTS)


def _state_json(t) -> str:
    pipe = FeaturePipeline(transforms=[t])
    pipe.state_ = [t.to_dict()]
    return pipe.to_json()


@pytest.mark.parametrize("files, message", [
    ({"config.json": "{}"}, "lacks model.safetensors, tokenizer.json"),
    ({"model.onnx": "x"}, "needs the tokenizer.json"),
])
def test_a_folder_that_is_no_encoder_is_named(tmp_path, files, message):
    folder = tmp_path / "enc"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(MlsdError, match=message):
        _encoders.encoder_format(folder)


def test_a_run_with_an_encoder_serves_from_the_artifacts_copy(tmp_path):
    folder = tmp_path / "p"
    (folder / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    pos, neg = ["good", "great", "film"], ["bad", "awful", "boring"]
    rows = ["id,text,liked"]
    for i in range(240):
        y = rng.random() < 0.5
        words = rng.choice((pos if y else neg) + ["movie", "plot"], size=4)
        rows.append(f"r{i},{' '.join(words)},{str(y).lower()}")
    (folder / "data" / "reviews.csv").write_text("\n".join(rows) + "\n")
    (folder / "mlsd.yaml").write_text(
        "name: enc\nproblem: {task: binary, target: liked, positive: true}\n"
        "sources:\n  reviews: {path: data/reviews.csv, key: id}\n"
        "features:\n  - {column: text, encode: embedding, vectors: models/enc}\n"
        "model: {kind: linear}\n")
    proj = Project.of(folder)
    (folder / "models" / "enc").mkdir(parents=True)
    (folder / "models" / "enc" / "config.json").write_text("{}")
    with pytest.raises(mlsd.errors.SpecError, match="lacks model.safetensors"):
        mlsd.run(proj)  # said at the spec check, before any stage runs
    shutil.rmtree(folder / "models" / "enc")
    model2vec_folder(folder / "models" / "enc", sentiment=True)
    s = mlsd.run(proj)
    assert s["model"]["metrics"]["model"]["test"]["pr_auc"] > 0.9
    assert s["features"]["notes"]["text"]["encoder"] == "model2vec"
    assert list((folder / ".mlsd" / "cache" / "embeddings").glob("*/part-*"))
    model_id = s["model"]["model_id"]
    art = ModelArtifact.load(proj.find_model(model_id))
    copy = [p.relative_to(art.folder).as_posix()
            for p in (art.folder / "encoders").rglob("*") if p.is_file()]
    assert sorted(p.split("/")[-1] for p in copy) == [
        "config.json", "model.safetensors", "tokenizer.json"]
    assert set(copy) <= set(art.manifest["files"])  # checked on load
    before = art.score(pa.table({"text": ["good great film", "awful boring"]}))
    # erasing rows empties the cache (it holds vectors of their texts)
    res = mlsd.pipeline.delete_rows(proj, "reviews", "id = 'r1'")
    assert res["embedding_cache"]["removed_files"] >= 1
    assert not (folder / ".mlsd" / "cache" / "embeddings").exists()
    shutil.rmtree(folder / "models" / "enc")  # the project's folder is gone
    again = ModelArtifact.load(proj.find_model(model_id))
    after = again.score(pa.table({"text": ["good great film", "awful boring"]}))
    np.testing.assert_allclose(after, before)
    assert after[0] > 0.5 > after[1]
