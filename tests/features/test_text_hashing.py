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
# ASCII of every kind (control bytes, punctuation, both cases): Arrow's way
ascii_words = st.text(alphabet=st.one_of(
    st.characters(max_codepoint=127),
    st.sampled_from(list("aZ_09 ") * 4)), max_size=40)
docs = st.lists(st.one_of(words, ascii_words, st.text(max_size=30), st.none()),
                min_size=1, max_size=12)
ranges = st.sampled_from([(1, 1), (1, 2), (2, 2), (2, 3), (1, 3)])


@given(docs, ranges, st.sampled_from([1, 7, 64, 4096]))
def test_hashed_counts_are_scikit_learns(texts, ngram_range, buckets):
    want = HashingVectorizer(n_features=buckets, ngram_range=ngram_range,
                             alternate_sign=False, norm=None, dtype=np.float64
                             ).transform([t or "" for t in texts]).tocsr()
    got = hashed_counts(texts, buckets, ngram_range)
    assert not _differences(got, want)


def _differences(got, want, equal_nan: bool = False) -> list[str]:
    """What differs between two CSR matrices: shape, row pointers, column
    indices, values (none: the same matrix, bit for bit)."""
    return [name for name, same in (
        ("shape", got.shape == want.shape),
        ("indptr", np.array_equal(got.indptr, want.indptr)),
        ("indices", np.array_equal(got.indices, want.indices)),
        ("data", np.array_equal(got.data, want.data, equal_nan=equal_nan)))
        if not same]


@given(st.lists(ascii_words, min_size=1, max_size=12), ranges)
def test_ascii_texts_are_read_as_scikit_learn_reads_them(texts, ngram_range):
    want = HashingVectorizer(n_features=4096, ngram_range=ngram_range,
                             alternate_sign=False, norm=None,
                             dtype=np.float64).transform(texts).tocsr()
    assert not _differences(hashed_counts(texts, 4096, ngram_range), want)


def test_a_sliced_or_chunked_column_gives_its_own_rows():
    texts = ["Zero one", "Un été, deux", None, "two THREE two", "", "Σοφία wise",
             "four_4 x y"]
    hv = HashingVectorizer(n_features=512, ngram_range=(1, 3), alternate_sign=False,
                           norm=None, dtype=np.float64)
    col = pa.array(texts)
    for start, stop in [(1, 4), (3, 7), (0, 7), (2, 3)]:
        want = hv.transform([t or "" for t in texts[start:stop]]).tocsr()
        got = hashed_counts(col.slice(start, stop - start), 512, (1, 3))
        assert not _differences(got, want)
    chunked = pa.chunked_array([col.slice(0, 3), col.slice(3)])
    assert not _differences(hashed_counts(chunked, 512, (1, 3)),
                            hv.transform([t or "" for t in texts]).tocsr())


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


_TRAIN = ["The cat sat", "the DOG sat, été", "a cat and a dog", "été chaud the cat",
          "Σοφία the dog", "under_score 42 42", None]


def _tfidf():
    from mlsd.engine import DuckDBEngine
    from mlsd.features import TfidfFeature

    table = pa.table({"t": _TRAIN, "_row": np.arange(len(_TRAIN))})
    engine = DuckDBEngine(threads=1)
    return TfidfFeature(column="t", min_df=1, ngram_range=(1, 2)).analyze(
        engine, engine.from_arrow(table))


@given(docs)
def test_tfidf_reads_any_text_as_scikit_learn_does(texts):
    from sklearn.feature_extraction.text import TfidfVectorizer

    t = _tfidf()
    peer = TfidfVectorizer(vocabulary=t.state_["vocabulary"], ngram_range=(1, 2)
                           ).fit([d or "" for d in _TRAIN])
    want = peer.transform([d or "" for d in texts]).toarray()
    np.testing.assert_allclose(t.apply(pa.table({"t": pa.array(texts, pa.string())})
                                       ).toarray(), want, rtol=1e-12)


@given(st.lists(st.lists(st.sampled_from([0.0, -0.0, 1.5, -2.0, float("nan"),
                                          float("inf")]), min_size=3, max_size=3),
                min_size=1, max_size=20), st.booleans())
def test_a_dense_block_is_scipys_csr_of_it(rows, flat):
    """Numeric blocks are built as CSR directly (features._base.block): the
    same matrix as SciPy's conversion, zeros left out and NaN kept."""
    import scipy.sparse as sp

    from mlsd.features._base import block

    x = np.array(rows, dtype=np.float64).reshape(len(rows), 3)
    if flat:
        x = x[:, 0]
    want, got = sp.csr_matrix(x.reshape(x.shape[0], -1)), block(x)
    assert not _differences(got, want, equal_nan=True)
