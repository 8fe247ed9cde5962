"""Ingest benchmark: validated load of a large CSV into the lake, against a peer.

Generates an N-row, 20-column CSV in which about 5% of rows break at least one
of four kinds of rule (type, range, regex, unique key), then times, each in its
own process (so each peak memory is its own):

* mlsd: ``mlsd ingest`` (extract, validate every value, quarantine, Delta commit);
* peer: pandas ``read_csv`` (in chunks) + a per-row validation + ``to_parquet``;
* limit: DuckDB's raw ``read_csv`` to Parquet (no validation), 2 threads, 2 GB.

Prints rows/s for each and the two ratios; the last line is one JSON object.

    python benchmarks/ingest.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_INT, N_FLOAT, N_CAT, N_EMAIL, N_TS, N_TEXT = 5, 5, 3, 2, 2, 2
CATS = ["red", "green", "blue", "black"]
EMAIL_RE = r"^[a-z0-9._]+@[a-z0-9.]+\.[a-z]{2,}$"


def columns() -> list[str]:
    return (["id"] + [f"i{k}" for k in range(N_INT)] + [f"f{k}" for k in
            range(N_FLOAT)] + [f"c{k}" for k in range(N_CAT)] + [f"e{k}" for k in
            range(N_EMAIL)] + [f"t{k}" for k in range(N_TS)] + [f"s{k}" for k in
                                                               range(N_TEXT)])


def generate(path: Path, rows: int, seed: int = 0) -> dict:
    """Write the CSV in chunks; return how many rows break each rule."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    broken = {"type": 0, "range": 0, "regex": 0, "unique": 0}
    chunk = 1_000_000
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        ids = np.arange(start, start + n)
        kind = rng.random(n)
        # ~5% of rows break a rule, in four kinds
        bad_type, bad_range = kind < 0.0125, (kind >= 0.0125) & (kind < 0.025)
        bad_regex = (kind >= 0.025) & (kind < 0.0375)
        # a repeated key repeats the previous row's, which must itself be good
        prev_good = np.r_[False, kind[:-1] >= 0.05]
        bad_unique = (kind >= 0.0375) & (kind < 0.05) & prev_good
        broken["type"] += int(bad_type.sum())
        broken["range"] += int(bad_range.sum())
        broken["regex"] += int(bad_regex.sum())
        broken["unique"] += int(bad_unique.sum())
        id_col = ids.astype(str).astype(object)
        id_col[bad_unique] = (ids[bad_unique] - 1).astype(str)  # repeats a key
        cols = {"id": id_col}
        for k in range(N_INT):
            v = rng.integers(0, 1_000_000, n).astype(str).astype(object)
            if k == 0:
                v[bad_type] = "12x"
                v[bad_range] = "-5"
            cols[f"i{k}"] = v
        for k in range(N_FLOAT):
            cols[f"f{k}"] = np.round(rng.random(n) * 1000, 3).astype(str)
        for k in range(N_CAT):
            cols[f"c{k}"] = np.array(CATS)[rng.integers(0, 4, n)]
        for k in range(N_EMAIL):
            user = rng.integers(0, 10**6, n).astype(str).astype(object)
            e = user + "@mail.example.org"
            if k == 0:
                e[bad_regex] = "not an email"
            cols[f"e{k}"] = e
        t0 = np.datetime64("2024-01-01T00:00:00")
        for k in range(N_TS):
            ts = t0 + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")
            cols[f"t{k}"] = np.datetime_as_string(ts) + "Z"
        for k in range(N_TEXT):
            cols[f"s{k}"] = np.char.add("text number ", rng.integers(0, 10**6, n
                                                                      ).astype(str))
        table = pa.table({c: pa.array(cols[c].tolist(), pa.string())
                          for c in columns()})
        if writer is None:
            writer = pacsv.CSVWriter(str(path), table.schema,
                                     write_options=pacsv.WriteOptions(
                                         quoting_style="none"))
        writer.write_table(table)
    writer.close()
    return broken


SPEC = {
    "name": "bench", "problem": {"task": "regression", "target": "f0"},
    "sources": {"big": {"path": "data.csv", "key": "id"}},
    "validate": {"required": ["id"], "ranges": {"i0": [0, None]},
                 "patterns": {"e0": EMAIL_RE}, "unique": ["id"],
                 "allowed": {"c0": CATS}},
    "features": [{"column": "i1"}],
}
SCHEMA = {"columns": {**{"id": "int64"}, **{f"i{k}": "int64" for k in range(N_INT)},
                      **{f"f{k}": "float64" for k in range(N_FLOAT)},
                      **{f"c{k}": "string" for k in range(N_CAT)},
                      **{f"e{k}": "string" for k in range(N_EMAIL)},
                      **{f"t{k}": "timestamp" for k in range(N_TS)},
                      **{f"s{k}": "string" for k in range(N_TEXT)}}}


def run_mlsd(csv_path: Path, work: Path) -> dict:
    import yaml

    from mlsd.pipeline import Project, ingest

    proj = work / "mlsd-project"
    shutil.rmtree(proj, ignore_errors=True)
    (proj / "schemas").mkdir(parents=True)
    os.link(csv_path, proj / "data.csv")
    (proj / "mlsd.yaml").write_text(yaml.safe_dump(SPEC))
    (proj / "schemas/big.yaml").write_text(yaml.safe_dump(SCHEMA))
    start = time.perf_counter()
    res = ingest(Project.find(start=proj))["sources"][0]
    secs = time.perf_counter() - start
    return {"seconds": secs, "rows_in": res["rows_in"], "stored": res["rows_stored"],
            "quarantined": res["rows_quarantined"]}


def run_pandas(csv_path: Path, work: Path) -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    email = re.compile(EMAIL_RE)
    seen: set[str] = set()
    rows_in = stored = quarantined = 0
    writer = None
    for chunk in pd.read_csv(csv_path, dtype=str, keep_default_na=False,
                             chunksize=500_000, engine="c"):
        good = []
        for row in chunk.itertuples(index=False):
            rows_in += 1
            ok = True
            try:
                ints = [int(getattr(row, f"i{k}")) for k in range(N_INT)]
                floats = [float(getattr(row, f"f{k}")) for k in range(N_FLOAT)]
                ts = [pd.Timestamp(getattr(row, f"t{k}")) for k in range(N_TS)]
                ident = int(row.id)
            except ValueError:
                ok = False
            if ok and (ints[0] < 0 or not email.match(row.e0) or row.c0 not in CATS
                       or row.id in seen):
                ok = False
            if ok:
                seen.add(row.id)
                good.append((ident, *ints, *floats, row.c0, row.c1, row.c2, row.e0,
                             row.e1, *ts, row.s0, row.s1))
                stored += 1
            else:
                quarantined += 1
        frame = pd.DataFrame(good, columns=columns())
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(work / "pandas.parquet", table.schema)
        writer.write_table(table)
    writer.close()
    return {"seconds": time.perf_counter() - start, "rows_in": rows_in,
            "stored": stored, "quarantined": quarantined}


def run_duckdb(csv_path: Path, work: Path) -> dict:
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '2GB'")
    con.execute(f"SET temp_directory = '{work / 'duck.tmp'}'")
    out = work / "duckdb.parquet"
    con.execute(f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar = true)) "
                f"TO '{out}' (FORMAT parquet)")
    n = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
    return {"seconds": time.perf_counter() - start, "rows_in": n, "stored": n,
            "quarantined": 0}


CONTENDERS = {"mlsd": run_mlsd, "pandas": run_pandas, "duckdb": run_duckdb}


def peak_rss_mib() -> float:
    """This process's own peak resident memory (VmHWM): unlike getrusage's
    maxrss, it is not inherited from the parent across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name: str, csv_path: Path, work: Path) -> None:
    res = CONTENDERS[name](csv_path, work)
    res["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=None,
                    help="Folder for the data (default: a temporary one).")
    ap.add_argument("--only", default=",".join(CONTENDERS),
                    help="Contenders to run, comma-separated (default: all).")
    ap.add_argument("--keep", action="store_true",
                    help="Reuse the CSV in --work if it is there.")
    ap.add_argument("--contender", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.contender:
        child(args.contender, args.file, args.work)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="mlsd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / "data.csv"
    t = time.perf_counter()
    marker = work / "broken.json"
    if args.keep and csv_path.exists() and marker.exists():
        broken = json.loads(marker.read_text())
    else:
        broken = generate(csv_path, args.rows)
        marker.write_text(json.dumps(broken))
    mib = csv_path.stat().st_size / 2**20
    print(f"{args.rows:,} rows x 20 columns ({mib:,.0f} MiB) ready in "
          f"{time.perf_counter() - t:.1f} s; rows breaking a rule: {broken}",
          file=sys.stderr)
    results = {}
    for name in args.only.split(","):
        proc = subprocess.run([sys.executable, __file__, "--contender", name,
                               "--file", str(csv_path), "--work", str(work)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["rows_per_s"] = res["rows_in"] / res["seconds"]
        results[name] = res
        print(f"{name:7s} {res['seconds']:8.1f} s  {res['rows_per_s']:>12,.0f} rows/s"
              f"  peak {res['peak_rss_mib']:,.0f} MiB  stored {res['stored']:,}  "
              f"quarantined {res['quarantined']:,}", file=sys.stderr)
    if set(results) != set(CONTENDERS):
        print(json.dumps({k: {"rows_per_s": round(v["rows_per_s"]),
                              "peak_rss_mib": round(v["peak_rss_mib"])}
                          for k, v in results.items()}))
        return
    m = results["mlsd"]
    reconcile = m["rows_in"] == m["stored"] + m["quarantined"] == args.rows
    expected_bad = sum(broken.values())
    summary = {
        "rows": args.rows, "broken_rows": broken,
        "mlsd_rows_per_s": round(m["rows_per_s"]),
        "pandas_rows_per_s": round(results["pandas"]["rows_per_s"]),
        "duckdb_rows_per_s": round(results["duckdb"]["rows_per_s"]),
        "ratio_vs_pandas": round(m["rows_per_s"] / results["pandas"]["rows_per_s"], 2),
        "ratio_vs_duckdb": round(m["rows_per_s"] / results["duckdb"]["rows_per_s"], 2),
        "mlsd_peak_rss_mib": round(m["peak_rss_mib"]),
        "pandas_peak_rss_mib": round(results["pandas"]["peak_rss_mib"]),
        "duckdb_peak_rss_mib": round(results["duckdb"]["peak_rss_mib"]),
        "counts_reconcile": reconcile,
        "quarantined_matches_planted": m["quarantined"] == expected_bad,
        "pandas_agrees": results["pandas"]["stored"] == m["stored"],
    }
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
