"""Augmentation: text and number operations, mixup, SMOTE rows, templates,
WordNet, and the robustness check."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from mlsd.errors import DataError, SpecError
from mlsd.spec import AugmentSpec
from mlsd.trainingdata import (
    FileThesaurus,
    TextOps,
    TrainRows,
    TrainTable,
    WordNet,
    augment_rows,
    mixup,
    perturb,
    smote_rows,
)


def _wordnet() -> WordNet:
    if not Path("/usr/share/wordnet/index.noun").is_file() and not os.environ.get(
            "WNSEARCHDIR"):
        if os.environ.get("MLSD_REQUIRE_SERVICES") == "1":
            pytest.fail("WordNet (Debian's wordnet-base) is not installed, and "
                        "MLSD_REQUIRE_SERVICES=1 asks for it")
        pytest.skip("WordNet (Debian's wordnet-base) is not installed")
    return WordNet()


class _Syn:
    def synonyms(self, word):
        return {"good": ["fine", "great"], "post": ["message"]}.get(word.lower(), [])


def test_text_operations_are_seeded_and_do_what_they_say():
    text = "a good post about a good model"
    words = text.split()

    def run(op, rate, seed=0):
        return getattr(TextOps(np.random.default_rng(seed), _Syn()), op)(words, rate)

    assert run("swap", 0.3) == run("swap", 0.3) and sorted(run("swap", 0.3)) == \
        sorted(words)
    assert run("swap", 0.3) != words
    kept = run("delete", 0.5)
    assert 1 <= len(kept) < len(words) and all(w in words for w in kept)
    replaced = run("synonyms", 0.2)
    diff = [(a, b) for a, b in zip(words, replaced, strict=True) if a != b]
    assert len(diff) == 1 and diff[0][1] in ("fine", "great", "message")
    grown = run("insert", 0.2)
    assert len(grown) == len(words) + 1
    assert [w for w in grown if w in ("fine", "great", "message")]
    # a word with punctuation keeps it; no synonym: left alone
    ops = TextOps(np.random.default_rng(1), _Syn())
    assert ops.synonyms(["good,"], 1.0)[0] in ("fine,", "great,")
    assert ops.synonyms(["zzz"], 1.0) == ["zzz"]
    assert ops.apply(None, {"swap": 0.5}) is None


def test_wordnet_reads_debians_database():
    wn = _wordnet()
    assert {"mistake", "fault"} <= set(wn.synonyms("error"))
    assert "assist" in wn.synonyms("help") and wn.synonyms("qwzxv") == []
    with pytest.raises(SpecError, match="apt-get install wordnet-base"):
        WordNet("/nonexistent")


def test_file_thesaurus(tmp_path):
    tsv = tmp_path / "syn.tsv"
    tsv.write_text("voiture\tauto\tbagnole\nrapide\tvite\n", encoding="utf-8")
    assert FileThesaurus(tsv).synonyms("Voiture") == ["auto", "bagnole"]
    js = tmp_path / "syn.json"
    js.write_text('{"fast": ["quick", "rapid"]}', encoding="utf-8")
    assert FileThesaurus(js).synonyms("fast") == ["quick", "rapid"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("lonely\n", encoding="utf-8")
    with pytest.raises(SpecError, match="line 1: a word and no synonym"):
        FileThesaurus(bad)


def _rows(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({
        "likes": pa.array(rng.integers(0, 50, n)),
        "score": rng.normal(10, 2, n),
        "text": [f"post {i} about models and data" for i in range(n)],
        "y": (rng.random(n) < 0.2).tolist(),
    })


def test_noise_stays_small_whole_and_in_range():
    t = _rows()
    out = perturb(t, noise=0.1, reference=t, seed=3)
    x, z = (np.array(t.column("score")), np.array(out.column("score")))
    assert 0.05 < np.std(z - x) / np.std(x) < 0.15
    likes = np.array(out.column("likes"))
    assert out.schema.field("likes").type == pa.int64()
    assert likes.min() >= 0 and likes.max() <= 49
    assert out.column("text").equals(t.column("text"))


def test_augment_rows_marks_each_row_and_takes_the_train_split_only():
    t = _rows()
    spec = AugmentSpec.model_validate({
        "copies": 2, "noise": {"scale": 0.05},
        "text": {"column": "text", "synonyms": 0.0, "swap": 0.2},
        "templates": {"column": "text", "label": True, "n": 30,
                      "templates": ["buy {x} now"], "slots": {"x": ["pills"]}}})
    aug = augment_rows(TrainTable(t), spec, target="y", seed=0)
    how = aug.column("_augmented").to_pylist()
    assert how.count("noise") == 800 and how.count("text") == 800
    assert how.count("templates") == 30
    made = aug.filter(pa.array([h == "templates" for h in how]))
    assert set(made.column("text").to_pylist()) == {"buy pills now"}
    assert set(made.column("y").to_pylist()) == {True}
    assert augment_rows(TrainTable(t), AugmentSpec(), target="y", seed=0) is None
    with pytest.raises(DataError, match="train split only"):
        TrainTable(t, split="test")
    with pytest.raises(DataError, match="TrainTable"):
        augment_rows(t, spec, target="y", seed=0)
    with pytest.raises(SpecError, match=r"slots\.site gives no value"):
        augment_rows(TrainTable(t), AugmentSpec.model_validate({"templates": {
            "column": "text", "label": True, "templates": ["at {site}"]}}),
            target="y", seed=0)


def test_mixup_rows_and_their_soft_labels():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.normal(size=(100, 3)))
    y = (rng.random(100) < 0.3).astype(int)
    Xm, ym, wm = mixup(TrainRows(X, y), alpha=0.4, n=50, task="binary",
                       n_classes=2, seed=1)
    assert Xm.shape == (100, 3) and len(ym) == len(wm) == 100
    assert np.allclose(wm[:50] + wm[50:], 1.0)  # lam and 1 - lam
    assert (Xm[:50] != Xm[50:]).nnz == 0  # one mixed input, two labels
    # each mixed row lies on the segment between two training rows
    Xr, yr, wr = mixup(TrainRows(X, y.astype(float)), alpha=0.4, n=20,
                       task="regression", n_classes=1, seed=1)
    assert Xr.shape == (20, 3) and np.allclose(wr, 1.0)
    with pytest.raises(DataError, match="TrainRows"):
        mixup((X, y), alpha=0.4, n=5, task="binary", n_classes=2, seed=0)


def test_smote_rows_grow_every_class():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.normal(size=(120, 4)))
    y = np.r_[np.zeros(100), np.ones(20)].astype(int)
    Xs, ys = smote_rows(TrainRows(X, y), share=0.5, k_neighbors=5, seed=0)
    assert np.bincount(ys).tolist() == [50, 10] and Xs.shape == (60, 4)


def test_noise_never_touches_a_numeric_target():
    t = _rows().append_column("price", pa.array(np.arange(400, dtype=float)))
    aug = augment_rows(TrainTable(t), AugmentSpec.model_validate(
        {"noise": {"scale": 0.5}}), target="price", seed=0)
    assert aug.column("price").equals(t.column("price"))
    assert not aug.column("score").equals(t.column("score"))
    with pytest.raises(SpecError, match="'score' is double, not text"):
        augment_rows(TrainTable(t), AugmentSpec.model_validate(
            {"text": {"column": "score", "swap": 0.1}}), target="price", seed=0)
    with pytest.raises(SpecError, match="'price' is the target"):
        augment_rows(TrainTable(t), AugmentSpec.model_validate(
            {"noise": {"columns": ["price"]}}), target="price", seed=0)
