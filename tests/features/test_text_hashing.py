"""Hashed n-grams: mlsd's own pass gives exactly scikit-learn's
``HashingVectorizer`` (columns, counts, index order) on any text, so models
and their served rows keep the buckets they were trained with."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer

from mlsd.features import HashedNgramsFeature
from mlsd.features._text import hashed_counts, ngram_terms

# letters of several scripts and cases (final sigma, dotted I, ß), digits of
# other scripts, marks, underscores, punctuation and spaces of every kind
words = st.text(alphabet=st.sampled_from(
    list("aZéÉßİıΣσς_0١٢𝟘ǅﬁ²") + ["\u0301", "\u200b", " ", "\t", "\n", "-", "'",
                                   ".", "😀", "\u00a0", "\u3000"]), max_size=40)
docs = st.lists(st.one_of(words, st.text(max_size=30)), min_size=1, max_size=12)
ranges = st.sampled_from([(1, 1), (1, 2), (2, 2), (2, 3), (1, 3)])


@given(docs, ranges, st.sampled_from([1, 7, 64, 4096]))
def test_hashed_counts_are_scikit_learns(texts, ngram_range, buckets):
    want = HashingVectorizer(n_features=buckets, ngram_range=ngram_range,
                             alternate_sign=False, norm=None,
                             dtype=np.float64).transform(texts).tocsr()
    got = hashed_counts(texts, buckets, ngram_range)
    assert got.shape == want.shape
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data, want.data)


@given(words, ranges)
def test_the_terms_are_scikit_learns_analyzer(text, ngram_range):
    analyzer = HashingVectorizer(ngram_range=ngram_range).build_analyzer()
    assert sorted(ngram_terms(text, ngram_range)) == sorted(analyzer(text))


def test_the_feature_row_path_and_batch_path_agree():
    f = HashedNgramsFeature(column="txt", buckets=64, ngram_range=(1, 2))
    f = f.analyze(None, None)
    texts = ["Free CRYPTO offer, click here!", None, "", "ΣΟΦΙΑ σοφίας", "a b c"]
    X = f.apply(pa.table({"txt": texts})).toarray()
    for i, v in enumerate(texts):
        idx, vals = f._row(f.check_fitted(), v)
        row = np.zeros(X.shape[1])
        row[idx] = vals
        assert np.array_equal(row, X[i]), v
