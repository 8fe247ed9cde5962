"""Feature benchmark: analyze + apply a typical feature set, against a peer.

Generates an N-row, 20-column Parquet file (12 numbers and 6 low-cardinality
categories with missing values, 2 high-cardinality ids), then times, each in its
own process (so each peak memory is its own):

* mlsd: ``FeaturePipeline.analyze`` (DuckDB aggregates over the Parquet file,
  2 threads) and ``apply`` streamed over it in 50,000-row batches: impute +
  scale on 11 numbers, quantile bins on one, one-hot on 4 categories, hashing on
  the 2 ids, a hashed cross of the last 2 categories;
* peer: the same transforms with scikit-learn's ``ColumnTransformer`` on a
  pandas DataFrame (``SimpleImputer`` + ``StandardScaler`` with a missing
  indicator, ``KBinsDiscretizer``, ``OneHotEncoder``, ``FeatureHasher``),
  ``fit_transform`` on the whole frame, as it is usually run.

Then the one-row apply of the same set: mlsd's ``entries`` (a dict of raw
values in, the sparse feature vector out: what a serving loop feeds the model;
``apply_one``, the same as a SciPy CSR matrix, is reported too) against the
peer's ``transform`` of a one-row DataFrame (median over 2,000 rows). Goals:
at least 3x faster, at most a third of the peer's peak memory, and one-row
apply under 50 microseconds. The last line is one JSON
object.

    python benchmarks/features.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUMS = [f"x{i}" for i in range(12)]
CATS = [f"c{i}" for i in range(6)]
IDS = ["u0", "u1"]
CHUNK = 1_000_000  # rows a row group of the generated file
APPLY_ROWS = 50_000  # rows an apply batch, as `mlsd predict` scores a file
ONE_ROW_SAMPLES = 2_000


def generate(path: Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    levels = [[f"v{k}" for k in range(n)] for n in (5, 8, 12, 20, 30, 40)]
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        cols = {}
        for i, c in enumerate(NUMS):
            x = rng.lognormal(mean=i % 3, size=n) if i % 2 else rng.normal(i, 2, n)
            x[rng.random(n) < 0.05] = np.nan
            cols[c] = pa.array(x, from_pandas=True)
        for c, lv in zip(CATS, levels, strict=True):
            v = np.asarray(lv, dtype=object)[rng.zipf(1.6, size=n) % len(lv)]
            v[rng.random(n) < 0.03] = None
            cols[c] = pa.array(v, pa.string())
        for c, card in zip(IDS, (100_000, 1_000_000), strict=True):
            cols[c] = pa.array(np.char.add("id", rng.integers(0, card, n).astype(str)))
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=CHUNK)
    writer.close()


def mlsd_pipeline():
    from mlsd.features import (
        BinsFeature,
        CrossFeature,
        FeaturePipeline,
        HashingFeature,
        NumericFeature,
        OneHotFeature,
    )

    return FeaturePipeline(transforms=[
        *[NumericFeature(column=c) for c in NUMS[:-1]],
        BinsFeature(column=NUMS[-1], bins=10),
        *[OneHotFeature(column=c) for c in CATS[:4]],
        *[HashingFeature(column=c, buckets=1024) for c in IDS],
        CrossFeature(columns=CATS[4:], buckets=1024),
    ])


def sample_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    return next(f.iter_batches(batch_size=ONE_ROW_SAMPLES)).to_pylist()


def time_rows(fn, rows: list[dict]) -> float:
    """Median microseconds of ``fn(row)`` over the rows (after a warm-up)."""
    import statistics

    for r in rows[:50]:
        fn(r)
    times = []
    for r in rows:
        t = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def run_mlsd(path: Path) -> dict:
    import pyarrow.parquet as pq

    from mlsd.engine import DuckDBEngine

    start = time.perf_counter()
    engine = DuckDBEngine(threads=2)
    pipe = mlsd_pipeline()
    pipe.analyze(engine, engine.con.read_parquet(str(path)))
    analyzed = time.perf_counter() - start
    rows = nnz = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=APPLY_ROWS):
        X = pipe.apply(batch)
        rows += X.shape[0]
        nnz += X.nnz
    secs = time.perf_counter() - start
    sample = sample_rows(path)
    one = time_rows(pipe.entries, sample)
    as_csr = time_rows(pipe.apply_one, sample)
    return {"seconds": secs, "analyze_seconds": analyzed, "rows": rows, "nnz": nnz,
            "width": len(pipe.names()), "one_row_us": one, "one_row_csr_us": as_csr}


def peer_transformer():
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        KBinsDiscretizer,
        OneHotEncoder,
        StandardScaler,
    )

    def strings(frame):  # FeatureHasher reads one list of strings a row
        return frame.astype(str).to_numpy().tolist()

    def crossed(frame):
        joined = frame.iloc[:, 0].astype(str) + "\x1f" + frame.iloc[:, 1].astype(str)
        return [[v] for v in joined]

    def hasher(fn):
        return make_pipeline(FunctionTransformer(fn),
                             FeatureHasher(n_features=1024, input_type="string"))

    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                              StandardScaler()), NUMS[:-1]),
        ("bins", make_pipeline(SimpleImputer(strategy="median"), KBinsDiscretizer(
            n_bins=10, strategy="quantile", encode="onehot",
            quantile_method="averaged_inverted_cdf")), [NUMS[-1]]),
        ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                 max_categories=20), CATS[:4]),
        *[(f"hash_{c}", hasher(strings), [c]) for c in IDS],
        ("cross", hasher(crossed), CATS[4:]),
    ], sparse_threshold=1.0)


def run_peer(path: Path) -> dict:
    import pandas as pd

    start = time.perf_counter()
    frame = pd.read_parquet(path)
    ct = peer_transformer()
    X = ct.fit_transform(frame)
    secs = time.perf_counter() - start
    rows = sample_rows(path)
    one = time_rows(lambda r: ct.transform(pd.DataFrame([r])), rows[:300])
    return {"seconds": secs, "rows": X.shape[0], "nnz": int(X.nnz),
            "width": X.shape[1], "one_row_us": one}


CONTENDERS = {"mlsd": run_mlsd, "scikit-learn": run_peer}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--keep", action="store_true",
                    help="Reuse the Parquet file in --work if it is there.")
    ap.add_argument("--contender", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.contender:
        sys.path.insert(0, str(Path(__file__).parent))
        from ingest import peak_rss_mib  # the other benchmarks' measure

        res = CONTENDERS[a.contender](a.file)
        res["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(res))
        return
    work = a.work or Path(tempfile.mkdtemp(prefix="mlsd-feat-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"features-{a.rows}.parquet"
    if not (a.keep and path.exists()):
        t = time.perf_counter()
        generate(path, a.rows)
        print(f"{a.rows:,} rows x 20 columns ready in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
    results = {}
    for name in CONTENDERS:
        proc = subprocess.run([sys.executable, __file__, "--contender", name,
                               "--file", str(path)], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "2"})
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"{name} failed")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    m, p = results["mlsd"], results["scikit-learn"]
    print(f"{'':<14}{'seconds':>10}{'rows/s':>14}{'peak MiB':>10}{'width':>8}"
          f"{'one row us':>12}")
    for name, r in results.items():
        print(f"{name:<14}{r['seconds']:>10.1f}{r['rows'] / r['seconds']:>14,.0f}"
              f"{r['peak_rss_mib']:>10.0f}{r['width']:>8}{r['one_row_us']:>12.1f}")
    out = {"rows": a.rows, "mlsd": m, "scikit-learn": p,
           "speedup": round(p["seconds"] / m["seconds"], 2),
           "memory_ratio": round(m["peak_rss_mib"] / p["peak_rss_mib"], 3),
           "one_row_us": round(m["one_row_us"], 1),
           "goals_met": {"speed_3x": p["seconds"] / m["seconds"] >= 3,
                         "memory_third": m["peak_rss_mib"] <= p["peak_rss_mib"] / 3,
                         "one_row_50us": m["one_row_us"] < 50}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
