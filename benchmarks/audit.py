"""Audit benchmark: `mlsd audit` of a large train/test pair, against a peer.

Generates N rows x 50 columns (30 floats, 5 integers, 8 categories, 3 ID-like
strings, 2 timestamps, a customer key, a binary target with real signal) as a
time-split pair of Parquet files: a clean twin, which the audit must leave
without any medium or high finding. Then times, each in its own process (so
each peak memory is its own):

* mlsd: read both files and run every check (``mlsd audit``'s path);
* peer: the same questions asked the usual way with pandas and scikit-learn
  (exact duplicates by DataFrame.merge, one-feature power by cross_val_score
  of a depth-3 decision tree per feature on the same 100,000-row sample, KS per
  numeric column with scipy).

Prints seconds and peak memory for each and the ratio; the last line is one
JSON object. Goal: mlsd under 60 s and 4 GiB at 1,000,000 rows.

    python benchmarks/audit.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_FLOAT, N_INT, N_CAT, N_ID, N_TS = 30, 5, 8, 3, 2  # + customer + target = 50


def generate(folder: Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    floats = rng.normal(size=(rows, N_FLOAT))
    for k in range(N_FLOAT):
        x = floats[:, k]
        x[rng.random(rows) < 0.02] = np.nan  # some missing values
        cols[f"f{k}"] = x
    for k in range(N_INT):
        cols[f"i{k}"] = rng.poisson(3 + k, rows)
    cats = np.array([f"level_{j}" for j in range(40)])
    for k in range(N_CAT):
        cols[f"c{k}"] = pa.array(cats[rng.zipf(1.6, rows) % 40])
    for k in range(N_ID):  # unique per row: ids that neither recur nor predict
        cols[f"id{k}"] = pa.array(np.char.add(f"r{k}-", rng.permutation(rows)
                                              .astype(str)))
    cols["customer"] = pa.array(np.char.add("cust", rng.integers(
        0, rows // 5, rows).astype(str)))
    t0 = np.datetime64("2024-01-01T00:00:00", "us")
    order = np.sort(rng.integers(0, 365 * 86400, rows))
    cols["t0"] = pa.array(t0 + order.astype("timedelta64[s]"),
                          pa.timestamp("us", tz="UTC"))
    cols["t1"] = pa.array(t0 + (order - rng.integers(0, 86400 * 30, rows)
                                ).astype("timedelta64[s]"),
                          pa.timestamp("us", tz="UTC"))
    logit = floats[:, :5] @ np.array([0.8, -0.6, 0.5, 0.4, -0.3])
    logit = np.nan_to_num(logit) - 2.0
    cols["y"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    table = pa.table(cols)
    cut = int(rows * 0.8)  # time split: the newest 20% are test
    pq.write_table(table.slice(0, cut), folder / "train.parquet")
    pq.write_table(table.slice(cut), folder / "test.parquet")


def run_mlsd(folder: Path) -> dict:
    from mlsd.audit import audit_pair
    from mlsd.etl import read_table

    start = time.perf_counter()
    train = read_table(folder / "train.parquet").table
    test = read_table(folder / "test.parquet").table
    read_s = time.perf_counter() - start
    res = audit_pair(train, test, target="y", time_column="t0",
                     allow_shared=["customer"])
    return {"seconds": time.perf_counter() - start, "read_seconds": read_s,
            "findings": [(f.check, f.severity, f.columns) for f in res.findings],
            "check_seconds": res.seconds}


def run_peer(folder: Path) -> dict:
    import pandas as pd
    from scipy.stats import ks_2samp
    from sklearn.model_selection import cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    start = time.perf_counter()
    train = pd.read_parquet(folder / "train.parquet")
    test = pd.read_parquet(folder / "test.parquet")
    features = [c for c in train.columns if c != "y"]
    dups = train[features].drop_duplicates().merge(test[features], how="inner")
    sample = train.sample(n=min(100_000, len(train)), random_state=0)
    power = {}
    for c in features:
        x = sample[[c]]
        if x[c].dtype == object:
            x = x[c].astype("category").cat.codes.to_frame()
        elif str(x[c].dtype).startswith("datetime"):
            x = x[c].astype("int64").to_frame()
        x = x.fillna(-999)
        power[c] = cross_val_score(DecisionTreeClassifier(max_depth=3), x,
                                   sample["y"], cv=3, scoring="roc_auc").mean()
    ks = {c: ks_2samp(train[c].dropna(), test[c].dropna()).statistic
          for c in features if pd.api.types.is_numeric_dtype(train[c].dtype)}
    return {"seconds": time.perf_counter() - start, "duplicates": len(dups),
            "max_power": max(power.values()), "max_ks": max(ks.values())}


CONTENDERS = {"mlsd": run_mlsd, "peer": run_peer}


def peak_rss_mib() -> float:
    """This process's own peak resident memory (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--only", default=",".join(CONTENDERS))
    ap.add_argument("--contender", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mlsd-audit-bench-"))
    if args.contender:
        res = CONTENDERS[args.contender](work)
        res["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(res, default=str))
        return
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    generate(work, args.rows)
    print(f"{args.rows:,} rows x 50 columns ready in {time.perf_counter() - t:.1f} s",
          file=sys.stderr)
    results = {}
    for name in args.only.split(","):
        proc = subprocess.run([sys.executable, __file__, "--contender", name,
                               "--work", str(work)], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results[name] = res
        print(f"{name:5s} {res['seconds']:7.1f} s  peak {res['peak_rss_mib']:,.0f} MiB",
              file=sys.stderr)
    m = results.get("mlsd", {})
    serious = [f for f in m.get("findings", []) if f[1] != "low"]
    summary = {"rows": args.rows, "columns": 50,
               "mlsd_seconds": round(m.get("seconds", 0), 1),
               "mlsd_peak_rss_mib": round(m.get("peak_rss_mib", 0)),
               "mlsd_check_seconds": m.get("check_seconds"),
               "clean_twin_quiet": not serious, "findings": m.get("findings")}
    if "peer" in results:
        p = results["peer"]
        summary.update({"peer_seconds": round(p["seconds"], 1),
                        "peer_peak_rss_mib": round(p["peak_rss_mib"]),
                        "speedup_vs_peer": round(p["seconds"] / m["seconds"], 2)
                        if m else None})
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
