"""Text features: mlsd's apply of hashed n-grams and TF-IDF against
scikit-learn's ``HashingVectorizer`` and ``TfidfVectorizer`` (the peer, whose
matrices mlsd reproduces exactly), same documents, same run.

Documents are made from a vocabulary of English and French words (a
``--unicode`` share of them with accented words, which take mlsd's Python
tokeniser; the others Arrow's), 5 to 40 words each, in batches of
``--batch`` rows as a scoring loop or ``mlsd predict`` applies them. Each
matrix is checked equal to the peer's before timing. The last line is one JSON
object.

    python benchmarks/text.py --docs 200000
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import pyarrow as pa

WORDS = ("the model data stream batch feature python latency server query team "
         "guide idea config docs index table bug test code cheap free offer click "
         "crypto win now update training build windows pipeline version").split()
ACCENTED = "été déjà garçon leçon élève réseau modèle données requête équipe".split()


def _docs(n: int, unicode_share: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = WORDS + ACCENTED if rng.random() < unicode_share else WORDS
        doc = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        out.append(doc.capitalize() + rng.choice([".", "!", "?", ""]))
    return out


def _time(f, batches) -> float:
    t = time.perf_counter()
    for b in batches:
        f(b)
    return time.perf_counter() - t


def main() -> None:
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer

    from mlsd.engine import DuckDBEngine
    from mlsd.features import HashedNgramsFeature, TfidfFeature

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--unicode", type=float, default=0.1,
                    help="share of documents with accented words")
    a = ap.parse_args()
    docs = _docs(a.docs, a.unicode)
    cols = [pa.array(docs[i:i + a.batch]) for i in range(0, len(docs), a.batch)]
    tables = [pa.table({"t": c}) for c in cols]
    lists = [c.to_pylist() for c in cols]

    hashed = HashedNgramsFeature(column="t", buckets=4096, ngram_range=(1, 2)
                                 ).analyze(None, None)
    hv = HashingVectorizer(n_features=4096, ngram_range=(1, 2), alternate_sign=False,
                           norm=None, dtype=np.float64)
    train = pa.table({"t": docs[:20_000], "_row": np.arange(20_000)})
    engine = DuckDBEngine(threads=1)
    tfidf = TfidfFeature(column="t", min_df=2, ngram_range=(1, 2)).analyze(
        engine, engine.from_arrow(train))
    tv = TfidfVectorizer(vocabulary=tfidf.state_["vocabulary"], ngram_range=(1, 2)
                         ).fit(docs[:20_000])
    for table, texts in zip(tables[:3], lists[:3], strict=False):  # the same matrices
        mine, peer = hashed.apply(table), hv.transform(texts).tocsr()
        assert (mine != peer).nnz == 0 and np.array_equal(mine.indices, peer.indices)
        np.testing.assert_allclose(tfidf.apply(table).toarray(),
                                   tv.transform(texts).toarray(), rtol=1e-12)
    out = {"docs": a.docs, "batch": a.batch, "unicode_share": a.unicode}
    for name, mine, peer in (
            ("hashed_ngrams", lambda t: hashed.apply(t), lambda x: hv.transform(x)),
            ("tfidf", lambda t: tfidf.apply(t), lambda x: tv.transform(x))):
        m = _time(mine, tables)
        p = _time(peer, lists)
        out[name] = {"mlsd_us_per_doc": round(m / a.docs * 1e6, 2),
                     "sklearn_us_per_doc": round(p / a.docs * 1e6, 2),
                     "speedup": round(p / m, 2)}
        print(f"{name:14s} mlsd {m / a.docs * 1e6:6.2f} us/doc, scikit-learn "
              f"{p / a.docs * 1e6:6.2f} us/doc ({p / m:.1f}x)", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
