"""Word vectors learned from a corpus alone, in the word2vec text format.

Shared by `mlsd features pretrain` (``mlsd.pipeline.pretrain_embeddings``)
and the call-center example, which pretrains its own vectors when it writes
its files (the examples sit below the stages, so this sits outside them).
"""

from __future__ import annotations

import numpy as np


def lsa_word_vectors(texts: list[str], *, dim: int = 64, min_df: int = 2,
                     max_words: int = 50_000, seed: int = 0
                     ) -> tuple[list[str], np.ndarray, float]:
    """Word vectors from a corpus alone (latent semantic analysis): the
    truncated SVD of its TF-IDF matrix, each word's row scaled by the singular
    values and normalised; words used in the same texts come out close. The
    words, their vectors and the share of variance kept."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(min_df=min_df, max_features=max_words, lowercase=True,
                            token_pattern=r"(?u)\b\w\w+\b")
    M = tfidf.fit_transform(texts)
    k = max(1, min(dim, M.shape[1] - 1, M.shape[0] - 1))
    svd = TruncatedSVD(n_components=k, random_state=seed)
    svd.fit(M)
    E = (svd.components_ * svd.singular_values_[:, None]).T  # words x k
    E /= np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    return (list(tfidf.get_feature_names_out()), E,
            round(float(svd.explained_variance_ratio_.sum()), 4))


def write_vectors(path, words: list[str], E: np.ndarray) -> None:
    """Word vectors in the word2vec text format (a ``count dim`` header, then
    a word and its numbers a line)."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"{len(words)} {E.shape[1]}\n")
        for w, v in zip(words, E, strict=True):
            fh.write(w + " " + " ".join(f"{x:.6f}" for x in v) + "\n")
