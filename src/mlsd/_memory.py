"""How much memory this process can still take, right now.

The driver of a Spark run gathers the feature matrices Spark made and fits
the model in its own memory. Past what the machine (or the container the
driver runs in) has free, the kernel kills the process without a word; mlsd
checks first and says what to do instead (see
:func:`mlsd.features._stage._apply_on_spark`).

Written by hand: psutil reports the machine's memory but not a container's
limit; this reads the kernel's own figures (Linux: ``/proc/meminfo``'s
``MemAvailable`` and the cgroup's limit less its usage, v2 or v1). Elsewhere
the answer is None: unknown, nothing is checked.
"""

from __future__ import annotations

from pathlib import Path

_UNLIMITED = 1 << 60  # cgroup v1 writes a huge number for "no limit"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED else value


def _meminfo_available(root: Path) -> int | None:
    try:
        for line in (root / "proc" / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room(root: Path) -> int | None:
    """The cgroup's limit less its usage (v2, else v1), None without a limit."""
    v2 = root / "sys" / "fs" / "cgroup"
    limit = _read_int(v2 / "memory.max")
    if limit is not None:
        used = _read_int(v2 / "memory.current") or 0
        return max(0, limit - used)
    v1 = v2 / "memory"
    limit = _read_int(v1 / "memory.limit_in_bytes")
    if limit is not None:
        used = _read_int(v1 / "memory.usage_in_bytes") or 0
        return max(0, limit - used)
    return None


def available_bytes(root: Path = Path("/")) -> int | None:
    """Bytes this process can still allocate: the smaller of the machine's
    available memory and its cgroup's room; None when neither is known."""
    known = [v for v in (_meminfo_available(root), _cgroup_room(root))
             if v is not None]
    return min(known) if known else None


def readable(nbytes: float) -> str:
    """A byte count as a person reads it (``1.5 GiB``, ``300 MiB``)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} bytes"
