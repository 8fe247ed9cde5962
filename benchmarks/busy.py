"""Polite on a busy machine: mlsd next to processes that keep every core busy.

Runs two workloads, each in its own process, first on an idle machine, then
next to one busy-loop process per core:

* the forum-spam example's ``mlsd run`` (a fresh copy each time);
* ``mlsd audit`` of a 1,000-row train/test pair (the clean twin of
  benchmarks/audit.py, 50 columns).

On the busy machine each runs twice: as mlsd runs it (OpenMP threads that sleep
when idle, ``OMP_WAIT_POLICY=PASSIVE``, set by ``import mlsd``) and as it ran
before, with libgomp's default (idle threads spin about 300,000 times before
sleeping, ``GOMP_SPINCOUNT=300000``, which overrides the policy). Goals: the
example's run under 2x its idle time, the audit under 5 s.
The last line is one JSON object.

    python benchmarks/busy.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _spin() -> None:  # pragma: no cover - a busy neighbour
    while True:
        pass


def timed(args: list[str], cwd: Path, spin: str | None) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if spin:
        env["GOMP_SPINCOUNT"] = spin
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlsd", *args], cwd=cwd, env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - started


def run_example(work: Path, example: Path, spin: str | None) -> float:
    folder = work / f"run-{time.monotonic_ns()}"
    shutil.copytree(example, folder)
    try:
        return timed(["run", "--json"], folder, spin)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--audit-rows", type=int, default=1000)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2,
                    help="busy-loop processes (default: one per core)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="mlsd-busy-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).parent))
    from audit import generate  # the audit benchmark's clean twin
    from mlsd.examples import write

    example = work / "example"
    if not example.exists():
        write("forum-spam", example)
    pair = work / "pair"
    pair.mkdir(exist_ok=True)
    generate(pair, a.audit_rows)
    audit_args = ["audit", "--train", str(pair / "train.parquet"), "--test",
                  str(pair / "test.parquet"), "--target", "y", "--time",
                  "t0", "--output", str(work / "audit.json")]

    results: dict[str, float] = {}
    results["run_idle"] = run_example(work, example, None)
    results["audit_idle"] = timed(audit_args, work, None)
    spinners = [multiprocessing.Process(target=_spin, daemon=True)
                for _ in range(a.busy)]
    for p in spinners:
        p.start()
    try:
        time.sleep(1)
        for label, spin in (("mlsd", None), ("spinning", "300000")):
            results[f"run_busy_{label}"] = run_example(work, example, spin)
            results[f"audit_busy_{label}"] = timed(audit_args, work, spin)
    finally:
        for p in spinners:
            p.terminate()
    print(f"{'workload':<28}{'idle':>8}{'busy (mlsd)':>14}{'busy (spinning)':>18}")
    for w, name in (("run", "example mlsd run"),
                    ("audit", f"audit {a.audit_rows:,} rows")):
        print(f"{name:<28}{results[f'{w}_idle']:>7.1f}s"
              f"{results[f'{w}_busy_mlsd']:>13.1f}s"
              f"{results[f'{w}_busy_spinning']:>17.1f}s")
    ratio = results["run_busy_mlsd"] / results["run_idle"]
    out = {k: round(v, 2) for k, v in results.items()}
    out.update({"busy_processes": a.busy, "run_busy_over_idle": round(ratio, 2),
                "run_goal_met": ratio < 2.0,
                "audit_goal_met": results["audit_busy_mlsd"] < 5.0})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
