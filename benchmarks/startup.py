"""Start-up: how long `mlsd --help` and `mlsd spec check` take beyond Python itself.

Issue 10's goal: both within 0.3 s of ``python -c pass`` (the same interpreter).
Each command runs ``--runs`` times, interleaved (pass, help, check, pass, ...) so
that a busy spell on the machine touches all three alike; the figures are the
median and the slowest run, and the overhead is the median minus the median of
``python -c pass``. ``mlsd spec check`` runs on a fresh copy of the forum-spam
example, so it reads the spec and checks it against the data's frozen schemas.

Bytecode is written and used (``PYTHONDONTWRITEBYTECODE`` is removed from the
environment and one warm-up run of each command comes first), as on a user's
machine; without it every run recompiles mlsd's sources (about 50 ms more).
The last line is one JSON object.

    python benchmarks/startup.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 0.3


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    opts = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    commands = {
        "python -c pass": ["-c", "pass"],
        "mlsd --help": ["-m", "mlsd", "--help"],
        "mlsd spec check": ["-m", "mlsd", "spec", "check"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "mlsd", "init", str(project),
                        "--example", "forum-spam"], check=True, capture_output=True)
        # one run of `mlsd run --until split` freezes the schemas the check reads
        subprocess.run([sys.executable, "-m", "mlsd", "run", "--until", "split"],
                       cwd=project, env=env, check=True, capture_output=True)
        for args in commands.values():  # warm-up: bytecode written, files cached
            timed(args, project, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(opts.runs):
            for name, args in commands.items():
                times[name].append(timed(args, project, env))
    base = statistics.median(times["python -c pass"])
    result = {}
    print(f"{'command':<18} {'median':>8} {'slowest':>8} {'over python':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        over = median - base
        result[name] = {"median_s": round(median, 3), "max_s": round(max(values), 3),
                        "over_python_s": round(over, 3)}
        print(f"{name:<18} {median:>7.3f}s {max(values):>7.3f}s {over:>11.3f}s")
    result["goal_over_python_s"] = GOAL
    result["goal_met"] = all(result[n]["over_python_s"] <= GOAL
                             for n in ("mlsd --help", "mlsd spec check"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
