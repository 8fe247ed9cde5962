"""How many threads a LightGBM fit or prediction may use, right now.

OpenMP threads meet at a barrier many times a tree. When other processes keep
the cores busy, a thread of ours waits for a core while its partner waits for
it: the example's training took 2.6 s on two threads on an idle machine and
14.5 s next to two busy loops (docs/benchmarks.md). A fit therefore takes as
many threads as there are cores nobody else is using, measured just before it
starts, and small inputs one thread (there is too little work to share: a
single row served over REST never wakes a second thread).

The thread count does not change the model: LightGBM is run with
``deterministic`` and column-wise histograms, and a test checks that one, two
and three threads give the same predictions.

Written by hand: threadpoolctl limits the threads of loaded libraries but does
not say how many cores are free; this reads the kernel's CPU counters.
"""

from __future__ import annotations

import os
import time

SMALL_ROWS = 10_000  # fewer rows than this: one thread
SAMPLE_SECONDS = 0.05  # how long the CPU counters are watched
_REUSE_SECONDS = 5.0  # a measure is reused this long (many fits in a row)
_last: tuple[float, int] | None = None


def usable_cores() -> int:
    """Cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user, nice, system, idle, iowait, irq, softirq, steal
    ticks = [int(v) for v in fields[1:9]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def free_cores() -> int:
    """Cores no other process is using, measured over SAMPLE_SECONDS (this
    process sleeps meanwhile, so what is busy is someone else's work); at
    least 1. Where the counters cannot be read, the load average stands in."""
    global _last
    now = time.monotonic()
    if _last is not None and now - _last[0] < _REUSE_SECONDS:
        return _last[1]
    cores = usable_cores()
    machine = os.cpu_count() or cores
    before = _cpu_times()
    if before is not None:
        time.sleep(SAMPLE_SECONDS)
        after = _cpu_times()
        busy, total = after[0] - before[0], after[1] - before[1]
        used = machine * busy / total if total > 0 else 0.0
    else:
        try:
            used = os.getloadavg()[0]
        except OSError:
            used = 0.0
    free = max(1, min(cores, int(machine - used + 0.5)))
    _last = (now, free)
    return free


def threads_for(rows: int, limit: int | None = None) -> int:
    """Threads for work on ``rows`` rows: one for small inputs, else the free
    cores, at most ``limit`` (the spec's ``model.threads``) when given."""
    if rows < SMALL_ROWS:
        return 1
    cap = usable_cores() if limit is None else max(1, limit)
    return min(cap, free_cores())
