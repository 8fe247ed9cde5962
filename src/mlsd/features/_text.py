"""Text transforms: hashed word n-grams and TF-IDF over a training vocabulary.

Both tokenise with scikit-learn's analyzer (lower case, words of two or more
letters or digits, word n-grams), so they read text the same way. The analysis
streams the training column through that analyzer in Arrow batches: tokenising
in SQL would be a second tokeniser that could disagree with the one ``apply``
uses. ``apply`` reads ASCII texts with Arrow's kernels and the others with
Python's ``re`` (:func:`word_tokens`): the analyzer's very tokens, tested equal
to it on any text, in a third of its time.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ..errors import MlsdError
from ._base import Transform, row_text, texts
from ._categorical import hash_report, hashed_name

SAMPLE_DOCS = 20_000  # documents read to name hashed n-gram columns


def _analyzer(ngram_range) -> Any:
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=tuple(ngram_range), lowercase=True
                           ).build_analyzer()


def _docs(col: pa.Array) -> list[str]:
    return ["" if v is None else v for v in texts(col).to_pylist()]


def _stream(engine, table, column: str, limit: int | None = None):
    """The training texts, batch by batch (None as empty), up to ``limit``."""
    seen = 0
    for batch in engine.batches(table.select(t=table[column].cast("string")),
                                rows=8192):
        docs = _docs(batch.column(0))
        if limit is not None:
            docs = docs[: limit - seen]
        seen += len(docs)
        yield docs
        if limit is not None and seen >= limit:
            return


# scikit-learn's default token pattern is ``(?u)\b\w\w+\b``: the maximal runs
# of two or more word characters, which is what ``\w\w+`` finds scanning left
# to right (a greedy run always ends at a boundary), without testing a boundary
# at every position: a third less time on a document
_WORDS = re.compile(r"(?u)\w\w+")


def _words(doc: str) -> list[str]:
    """scikit-learn's tokens of one text, by Python's Unicode rules."""
    return _WORDS.findall(doc.lower())


def ngram_terms(doc: str, ngram_range) -> list[str]:
    """The word n-grams scikit-learn's analyzer gives ``doc`` (lower case,
    ``ngram_range``), unigrams first, then each longer size in text order."""
    tokens = _words(doc)
    lo, hi = ngram_range
    terms = tokens if lo == 1 else []
    for n in range(max(lo, 2), hi + 1):
        if n == 2:
            terms = terms + list(map(" ".join, zip(tokens, tokens[1:], strict=False)))
        else:
            terms = terms + [" ".join(tokens[i:i + n])
                             for i in range(len(tokens) - n + 1)]
    return terms


# What scikit-learn's analyzer does to ASCII text, as a byte table: the bytes
# of words (letters, digits, underscore) lower-cased, every other byte a space.
# For ASCII, ``str.lower`` and ``(?u)\w`` are exactly these, so an ASCII
# column is tokenised by Arrow's kernels over the mapped bytes; any other text
# goes through ``_WORDS`` in Python (Unicode case and word rules).
_ASCII_WORDS = np.full(256, ord(" "), np.uint8)
for _b in b"abcdefghijklmnopqrstuvwxyz0123456789_":
    _ASCII_WORDS[_b] = _b
for _b in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _ASCII_WORDS[_b] = _b + 32


def _ascii_tokens(col: pa.StringArray) -> tuple[pa.Array, np.ndarray]:
    """The tokens of ASCII texts in order, and the position of the text each
    comes from (nondecreasing)."""
    low = pc.ascii_lower(col)  # fresh buffers: the mapping below reads them all
    validity, offsets, data = low.buffers()
    if data is None or data.size == 0:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    mapped = pa.py_buffer(_ASCII_WORDS[np.frombuffer(data, np.uint8)])
    clean = pa.Array.from_buffers(pa.string(), len(low), [validity, offsets, mapped],
                                  offset=low.offset)
    pieces = pc.ascii_split_whitespace(clean)
    flat, parent = pc.list_flatten(pieces), pc.list_parent_indices(pieces)
    keep = pc.greater_equal(pc.binary_length(flat), 2)  # words of two or more
    return flat.filter(keep), parent.filter(keep).to_numpy()


def word_tokens(col: pa.Array) -> list[tuple[pa.Array, np.ndarray]]:
    r"""scikit-learn's tokens of a text column (lower case, ``\w\w+``): parts
    of (tokens in text order, the row each comes from), a row's tokens all in
    one part (ASCII rows by Arrow, the others by Python's ``re``)."""
    col = texts(col)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    ascii_ = pc.fill_null(pc.string_is_ascii(col), True).to_numpy(
        zero_copy_only=False)
    if ascii_.all():
        return [_ascii_tokens(col)]
    parts = []
    if ascii_.any():
        tok, at = _ascii_tokens(col.filter(pa.array(ascii_)))
        parts.append((tok, np.flatnonzero(ascii_)[at]))
    others = np.flatnonzero(~ascii_)
    tokens: list[str] = []
    counts = np.zeros(len(others), np.int64)
    for k, d in enumerate(col.take(pa.array(others)).to_pylist()):
        got = _words(d)
        tokens += got
        counts[k] = len(got)
    parts.append((pa.array(tokens, pa.string()), np.repeat(others, counts)))
    return parts


def ngrams(col: pa.Array, ngram_range) -> tuple[pa.Array, np.ndarray]:
    """Every word n-gram scikit-learn's analyzer finds in each text of
    ``col`` and the row it comes from (in no particular order): the words
    joined by Arrow, an n-gram kept when its first and last word are of the
    same row."""
    lo, hi = ngram_range
    terms, rows = [], []
    for tok, at in word_tokens(col):
        if lo == 1:
            terms.append(tok)
            rows.append(at)
        for n in range(max(lo, 2), hi + 1):
            m = len(tok) - n + 1
            if m <= 0:
                continue
            same = np.flatnonzero(at[:m] == at[n - 1:])
            joined = pc.binary_join_element_wise(
                *[tok.slice(i, m) for i in range(n)], " ")
            terms.append(joined.take(pa.array(same)))
            rows.append(at[same])
    if not terms:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    return pa.concat_arrays(terms), np.concatenate(rows).astype(np.int64)


def counts_matrix(rows: np.ndarray, cols: np.ndarray, n_rows: int, width: int
                  ) -> sp.csr_matrix:
    """The CSR matrix counting each (row, column) pair, indices sorted (what
    scipy's COO sum gives, by one sort of the pairs' keys)."""
    key = np.sort(rows * width + cols)
    if not len(key):
        return sp.csr_matrix((n_rows, width), dtype=np.float64)
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    data = np.diff(np.r_[first, len(key)]).astype(np.float64)
    key = key[first]
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.bincount(key // width, minlength=n_rows), out=indptr[1:])
    return sp.csr_matrix((data, (key % width).astype(np.int32), indptr),
                         shape=(n_rows, width))


def hashed_counts(docs: pa.Array | list[str | None], buckets: int, ngram_range
                  ) -> sp.csr_matrix:
    """What scikit-learn's ``HashingVectorizer(n_features=buckets,
    ngram_range=..., alternate_sign=False, norm=None)`` gives ``docs`` (the
    same columns, counts and index order; None as empty), in a third of its
    time: the n-grams by Arrow (:func:`ngrams`), each distinct one hashed
    once (tested equal on arbitrary Unicode: tests/features/test_text_hashing.py)."""
    col = docs if isinstance(docs, pa.Array | pa.ChunkedArray) else \
        pa.array(docs, pa.string())
    def columns(distinct: list[str]) -> np.ndarray:
        h = np.fromiter(map(mmh3.hash, distinct), np.int64, len(distinct))
        cols = np.abs(h) % buckets
        cols[h == -(2**31)] = (2**31 - 1 - (buckets - 1)) % buckets
        return cols

    terms, rows = ngrams(col, ngram_range)
    return counts_matrix(rows, per_term(terms, columns), len(col), buckets)


def per_term(terms: pa.Array, f) -> np.ndarray:
    """``f`` of the distinct terms (a list of str -> an array), for every
    term: a batch's words repeat, each is looked at once."""
    enc = pc.dictionary_encode(terms)
    return f(enc.dictionary.to_pylist())[enc.indices.to_numpy(zero_copy_only=False)]


def ngram_bucket(term: str, buckets: int) -> int:
    """The column scikit-learn's ``HashingVectorizer`` gives a term (signed
    MurmurHash3, seed 0, its absolute value modulo the width)."""
    h = mmh3.hash(term, 0, signed=True)
    if h == -(2**31):
        return (2**31 - 1 - (buckets - 1)) % buckets
    return abs(h) % buckets


class HashedNgramsFeature(Transform):
    """Word n-gram counts hashed into ``buckets`` columns.

    Uses scikit-learn's ``HashingVectorizer`` (MurmurHash3, stable across
    processes; no vocabulary to learn, so nothing can leak from test text). The
    analysis reads up to 20,000 training texts to measure the collision rate
    and name each column by its most frequent n-gram (``text~ng1812[crypto,+3]``).
    """

    kind = "hashed_ngrams"
    stateless = True

    def __init__(self, *, column: str | None = None, buckets: int = 4096,
                 ngram_range: tuple[int, int] = (1, 2)):
        super().__init__(column=column, buckets=buckets,
                         ngram_range=ngram_range)

    def _analyze(self, engine=None, table=None):
        state = {"buckets": self.params["buckets"],
                 "ngram_range": list(self.params["ngram_range"]),
                 "lowercase": True, "hash": "sklearn HashingVectorizer"}
        if engine is not None:
            analyzer = _analyzer(state["ngram_range"])
            counts: Counter = Counter()
            docs = 0
            for batch in _stream(engine, table, self.column, SAMPLE_DOCS):
                docs += len(batch)
                for d in batch:
                    counts.update(analyzer(d))
            state["report"] = self._report(counts, docs, state["buckets"])
        return state

    @staticmethod
    def _report(counts: Counter, docs: int, buckets: int) -> dict[str, Any]:
        terms = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        b = np.fromiter((ngram_bucket(t, buckets) for t, _ in terms), dtype=np.int64,
                        count=len(terms))
        report = hash_report([t for t, _ in terms], [n for _, n in terms], buckets, b)
        del report["rows_colliding"]  # n-gram occurrences, not rows: left out
        return {"docs_read": docs, **report}

    def _apply(self, state, col):
        return hashed_counts(col, state["buckets"], state["ngram_range"])

    def _row(self, state, v):
        counts: dict[int, float] = {}
        for term in ngram_terms("" if v is None else row_text(v),
                                state["ngram_range"]):
            j = ngram_bucket(term, state["buckets"])
            counts[j] = counts.get(j, 0.0) + 1.0
        idx = sorted(counts)
        return idx, [counts[j] for j in idx]

    def _names(self, state):
        names = (state.get("report") or {}).get("names", {})
        return [hashed_name(self.column, i, names, mark="~ng")
                for i in range(state["buckets"])]

    def notes(self):
        r = self.check_fitted().get("report")
        return {k: v for k, v in r.items() if k != "names"} if r else {}


class TfidfFeature(Transform):
    """TF-IDF of word n-grams over a vocabulary learned from the training split:
    the ``max_features`` n-grams found in the most training documents, each in
    at least ``min_df`` of them; ``idf = ln((1 + n) / (1 + df)) + 1`` (smoothed,
    as scikit-learn's ``TfidfVectorizer``), rows scaled to unit length. Words
    outside the vocabulary are ignored; an empty or missing text is a row of
    zeros."""

    kind = "tfidf"

    def __init__(self, *, column: str | None = None, max_features: int = 20_000,
                 min_df: int = 2, ngram_range: tuple[int, int] = (1, 1)):
        super().__init__(column=column, max_features=max_features, min_df=min_df,
                         ngram_range=ngram_range)

    def _analyze(self, engine, table):
        p = self.params
        analyzer = _analyzer(p["ngram_range"])
        df: Counter = Counter()
        docs = 0
        for batch in _stream(engine, table, self.column):
            docs += len(batch)
            for d in batch:
                df.update(set(analyzer(d)))
        kept = sorted(((t, n) for t, n in df.items() if n >= p["min_df"]),
                      key=lambda kv: (-kv[1], kv[0]))[: p["max_features"]]
        if not kept:
            raise MlsdError(
                f"feature {self.column!r}: tfidf found no word in at least min_df="
                f"{p['min_df']} of the {docs} training texts; lower min_df or use "
                f"hashed_ngrams")
        vocab = sorted(t for t, _ in kept)
        idf = {t: float(np.log((1 + docs) / (1 + n)) + 1.0) for t, n in kept}
        return {"vocabulary": vocab, "idf": [idf[t] for t in vocab], "docs": docs,
                "distinct": len(df), "ngram_range": list(p["ngram_range"])}

    def _cached(self, state) -> dict[str, Any]:
        def build(state):
            return {"vocab": {t: i for i, t in enumerate(state["vocabulary"])},
                    "analyzer": _analyzer(state["ngram_range"]),
                    "idf": np.asarray(state["idf"], dtype=np.float64)}
        return self._memo(state, "vectorizer", build)

    @staticmethod
    def _weigh(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
               idf: np.ndarray) -> np.ndarray:
        # tf * idf, then each row to unit length; the squares are summed in
        # column order by reduceat, for one row as for many (same bits)
        data = data * idf[indices]
        if not len(data):
            return data
        per_row = np.diff(indptr)
        full = per_row > 0
        sq = np.add.reduceat(data * data, indptr[:-1][full])
        return data / np.repeat(np.sqrt(sq), per_row[full])

    def _apply(self, state, col):
        c = self._cached(state)
        vocab = c["vocab"]
        terms, rows = ngrams(col, state["ngram_range"])
        j = per_term(terms, lambda distinct: np.fromiter(
            (vocab.get(t, -1) for t in distinct), np.int64, len(distinct)))
        known = j >= 0  # words outside the vocabulary are ignored
        counts = counts_matrix(rows[known], j[known], len(col), len(vocab))
        data = self._weigh(counts.data, counts.indices, counts.indptr, c["idf"])
        return sp.csr_matrix((data, counts.indices, counts.indptr),
                             shape=counts.shape)

    def _row(self, state, v):
        c = self._cached(state)
        counts: dict[int, float] = {}
        for term in c["analyzer"]("" if v is None else row_text(v)):
            j = c["vocab"].get(term)
            if j is not None:
                counts[j] = counts.get(j, 0.0) + 1.0
        if not counts:
            return [], []
        idx = sorted(counts)
        data = self._weigh(np.array([counts[j] for j in idx]), np.array(idx),
                           np.array([0, len(idx)]), c["idf"])
        return idx, data.tolist()

    def _names(self, state):
        return [f"{self.column}~{t}" for t in state["vocabulary"]]

    def notes(self):
        s = self.check_fitted()
        return {"vocabulary": len(s["vocabulary"]), "distinct": s["distinct"],
                "docs": s["docs"]}



_VECTOR_FILES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """A file's sha256, computed once per (path, size, mtime) in a process."""
    import hashlib
    import os

    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _VECTOR_FILES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _VECTOR_FILES[key] = h.hexdigest()
    return _VECTOR_FILES[key]


def read_vectors(path: str, wanted: set[str]) -> tuple[list[str], np.ndarray]:
    """The vectors of the ``wanted`` words in a word2vec/fastText text file
    (an optional ``count dim`` header, then a word and its numbers a line),
    read in one pass without loading the others."""
    words, rows, dim = [], [], None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if n == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])
                continue
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise MlsdError(f"{path}, line {n + 1}: {len(parts) - 1} numbers "
                                f"where the file's vectors have {dim}")
            if parts[0] in wanted:
                try:
                    rows.append([float(x) for x in parts[1:]])
                except ValueError:
                    raise MlsdError(f"{path}, line {n + 1}: not numbers after "
                                    f"the word {parts[0]!r}") from None
                words.append(parts[0])
    if dim is None:
        raise MlsdError(f"{path}: no word vector in the file")
    return words, (np.asarray(rows, dtype=np.float32) if rows
                   else np.zeros((0, dim), dtype=np.float32))


class EmbeddingFeature(Transform):
    """The mean of pretrained word vectors over a text's words (transfer
    learning): a file in the word2vec/fastText text format, pretrained on far
    more text than the labelled rows (or on the project's own unlabelled text:
    `mlsd features pretrain`), so words used alike get close vectors and a
    model learns from meaning rather than from exact words.

    The analysis keeps the vectors of the ``max_words`` most frequent training
    words (the state stays small and the artifact serves without the file;
    its sha256 is kept); a word without a vector is left out of the mean, a
    text without any is a row of zeros. Words are lower-cased word tokens, as
    TF-IDF's.

    ``vectors`` may instead name a folder holding a pretrained sentence encoder
    (a model2vec static model, or an ONNX encoder with its tokenizer; see
    ``._encoders``): each text is then the encoder's vector (an empty one:
    zeros). The state keeps the folder's content hash, the artifact a copy of
    its files (``home``, set when a model is loaded, points there); vectors
    are cached by text hash, on disk under ``cache_dir`` when a project gives
    one.
    """

    kind = "embedding"
    home: str | None = None  # the artifact's copy of an encoder folder
    cache_dir: str | None = None  # the project's cache of encoded texts

    def __init__(self, *, column: str | None = None, vectors: str | None = None,
                 max_words: int = 50_000):
        super().__init__(column=column, vectors=vectors, max_words=max_words)

    def _analyze(self, engine, table):
        import base64
        import os

        p = self.params
        if p["vectors"] and os.path.isdir(p["vectors"]):
            return self._analyze_encoder(engine, table)
        if not p["vectors"] or not os.path.isfile(p["vectors"]):
            raise MlsdError(f"feature {self.column!r}: no vectors file or encoder "
                            f"folder {p['vectors']!r}")
        analyzer = _analyzer((1, 1))
        counts: Counter = Counter()
        for batch in _stream(engine, table, self.column):
            for d in batch:
                counts.update(analyzer(d))
        wanted = {w for w, _ in counts.most_common(p["max_words"])}
        words, E = read_vectors(p["vectors"], wanted)
        if not words:
            raise MlsdError(f"feature {self.column!r}: none of the training words "
                            f"has a vector in {p['vectors']}")
        order = np.argsort(words, kind="stable")
        words = [words[i] for i in order]
        E = E[order]
        total = sum(counts.values())
        covered = sum(counts[w] for w in words)
        return {"sha256": file_sha256(p["vectors"]), "dim": int(E.shape[1]),
                "words": words,
                "vectors": base64.b64encode(E.astype("<f4").tobytes()).decode(),
                "coverage": round(covered / total, 4) if total else 0.0}

    def _analyze_encoder(self, engine, table) -> dict[str, Any]:
        from ._encoders import Encoder, content_hash, encoder_files

        files = encoder_files(self.params["vectors"])
        sha = content_hash(files)
        enc = Encoder(self.params["vectors"], sha, self.cache_dir)
        texts = rows = 0
        for batch in _stream(engine, table, self.column):
            enc.vectors(batch)  # encoded once here, read from the cache after
            rows += len(batch)
            texts += sum(1 for d in batch if d)
        self.__dict__["_encoder"] = enc
        return {"encoder": enc.format, "sha256": sha, "files": files,
                "dim": enc.dim, "texts": texts, "rows": rows}

    def encoder(self, state: dict | None = None):
        """The loaded encoder of a folder-based state (from the artifact's copy
        when loaded from one, else from ``vectors``)."""
        state = self.check_fitted() if state is None else state

        def build(state):
            from pathlib import Path

            from ._encoders import Encoder

            mine = self.__dict__.get("_encoder")
            if mine is not None and mine.sha256 == state["sha256"]:
                return mine  # the analysis' own, its cache warm
            folder = (self.home if self.home and Path(self.home).is_dir()
                      else self.params["vectors"])
            if not folder or not Path(folder).is_dir():
                raise MlsdError(f"feature {self.column!r}: the encoder folder "
                                f"{folder!r} is missing")
            return Encoder(folder, state["sha256"], self.cache_dir)
        return self._memo(state, "encoder", build)

    def bundle(self) -> tuple[str, str, list[str]] | None:
        """What an artifact must carry to serve this feature: (content hash,
        source folder, file names), or None for word vectors (in the state)."""
        s = self.check_fitted()
        if "encoder" not in s:
            return None
        return s["sha256"], str(self.encoder(s).folder), sorted(s["files"])

    def __getstate__(self) -> dict[str, Any]:
        # a loaded encoder (an onnxruntime session) is rebuilt after unpickling
        return {k: v for k, v in super().__getstate__().items() if k != "_encoder"}

    def _cached(self, state) -> dict[str, Any]:
        def build(state):
            import base64

            from sklearn.feature_extraction.text import CountVectorizer

            E = np.frombuffer(base64.b64decode(state["vectors"]), dtype="<f4"
                              ).reshape(len(state["words"]), state["dim"])
            vocab = {w: i for i, w in enumerate(state["words"])}
            return {"cv": CountVectorizer(lowercase=True, vocabulary=vocab,
                                          dtype=np.float64),
                    "E": E.astype(np.float64)}
        return self._memo(state, "vectors", build)

    def _apply(self, state, col):
        if "encoder" in state:
            vecs = self.encoder(state).vectors(_docs(col))
            return sp.csr_matrix(vecs.astype(np.float64))
        c = self._cached(state)
        counts = c["cv"].transform(_docs(col)).tocsr()
        per_doc = np.asarray(counts.sum(axis=1)).ravel()
        mean = (counts @ c["E"]) / np.where(per_doc > 0, per_doc, 1.0)[:, None]
        return sp.csr_matrix(mean)

    def _names(self, state):
        return [f"{self.column}~v{i}" for i in range(state["dim"])]

    def notes(self):
        s = self.check_fitted()
        if "encoder" in s:
            return {"encoder": s["encoder"], "dim": s["dim"],
                    "content_hash": s["sha256"][:12], "texts": s["texts"]}
        return {"vectors_kept": len(s["words"]), "dim": s["dim"],
                "coverage": s["coverage"]}
