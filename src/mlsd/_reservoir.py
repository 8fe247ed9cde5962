"""Reservoir sampling over a stream of Arrow batches of unknown length (used by
the sampling stage and by a broker consumer that keeps a sample).

Written here because no maintained library samples a stream of Arrow record
batches: :class:`Reservoir` is Li's Algorithm L (uniform, each of the ``k`` kept
rows equally likely to be any row of the stream), :class:`WeightedReservoir` is
Efraimidis and Spirakis' A-ExpJ (each row kept with a probability that grows with
its weight; successive sampling without replacement). Both jump over the rows
they will not keep, so the work per batch is a few array operations plus one step
per replacement (about ``k log(N/k)`` over a stream of ``N`` rows), and memory
holds only the ``k`` kept rows and the replacements waiting to be folded in.

Feed batches with :meth:`~Reservoir.add` (or :meth:`~Reservoir.extend`), then
:meth:`~Reservoir.result` gives the kept rows in stream order with their stream
positions.
"""

from __future__ import annotations

import heapq
import math
import random
from typing import TYPE_CHECKING

from .errors import DataError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import numpy as np
    import pyarrow as pa


class _Kept:
    """The kept rows: ``k`` slots, each pointing into a pool of row chunks that
    is folded into one table whenever it holds more than ``2k`` rows.

    A stream of bare arrays of numbers without nulls (a column of values, as
    the benchmark's and a broker's are) is kept in one numpy buffer instead:
    a replacement is then one array store, with no Arrow object per batch. At
    the first batch that does not fit, the buffer becomes the pool's first
    chunk."""

    def __init__(self, k: int):
        import numpy as np

        self.k = k
        self.chunks: list = []
        self.pool_rows = 0
        self.slot_row = np.full(k, -1, dtype=np.int64)   # row of the pool
        self.slot_pos = np.full(k, -1, dtype=np.int64)   # position in the stream
        self.buffer: np.ndarray | None = None
        self.buffer_type: pa.DataType | None = None

    def put(self, batch: pa.RecordBatch | pa.Array, rows: np.ndarray,
            slots: np.ndarray, positions: np.ndarray) -> None:
        """Rows ``rows`` of ``batch`` go to ``slots`` (of two rows for one
        slot, the later in the stream wins); ``positions`` are their stream
        positions, increasing."""
        import numpy as np

        if not len(rows):
            return
        if len(slots) > 256:  # of two rows for one slot, the later wins
            _, first_rev = np.unique(slots[::-1], return_index=True)
            pick = np.sort(len(slots) - 1 - first_rev)
            rows, slots, positions = rows[pick], slots[pick], positions[pick]
        elif len(slots) > 1 and len(set(sl := slots.tolist())) < len(sl):
            last = {s: i for i, s in enumerate(sl)}
            pick = np.fromiter(sorted(last.values()), dtype=np.int64)
            rows, slots, positions = rows[pick], slots[pick], positions[pick]
        self.slot_pos[slots] = positions
        if self._buffered(batch):
            self.buffer[slots] = batch.to_numpy()[rows]
            self.slot_row[slots] = slots
            return
        self.chunks.append(_take(batch, rows))
        self.slot_row[slots] = self.pool_rows + np.arange(len(rows))
        self.pool_rows += len(rows)
        if self.pool_rows > 2 * self.k:
            self._fold()

    def _buffered(self, batch) -> bool:
        """Whether ``batch`` goes to the numpy buffer (starting it at the
        first batch); a batch that does not fit ends the buffer."""
        import numpy as np
        import pyarrow as pa

        plain = isinstance(batch, pa.Array) and batch.null_count == 0 and (
            pa.types.is_integer(batch.type) or pa.types.is_floating(batch.type))
        if self.buffer is None and not self.chunks and plain:
            self.buffer_type = batch.type
            self.buffer = np.zeros(self.k, dtype=batch.type.to_pandas_dtype())
        if self.buffer is not None:
            if plain and batch.type == self.buffer_type:
                return True
            # the pool takes over: the buffer is its first chunk
            self.chunks = [pa.array(self.buffer, type=self.buffer_type)]
            self.pool_rows = self.k
            self.buffer = None
        return False

    def _fold(self) -> None:
        import numpy as np
        import pyarrow as pa

        used = self.slot_row >= 0
        table = _concat(self.chunks).take(self.slot_row[used])
        self.chunks = [table] if isinstance(table, pa.Array) else table.to_batches()
        self.slot_row[used] = np.arange(int(used.sum()))
        self.pool_rows = int(used.sum())

    def slots(self) -> np.ndarray:
        """The kept rows' slots, in stream order (as :meth:`table`)."""
        import numpy as np

        used = np.flatnonzero(self.slot_row >= 0)
        return used[np.argsort(self.slot_pos[used], kind="stable")]

    def table(self) -> tuple[pa.Table | None, np.ndarray]:
        """The kept rows in stream order, and their stream positions."""
        import numpy as np
        import pyarrow as pa

        used = np.flatnonzero(self.slot_row >= 0)
        if not len(used):
            return None, np.empty(0, dtype=np.int64)
        order = used[np.argsort(self.slot_pos[used], kind="stable")]
        if self.buffer is not None:
            rows = pa.array(self.buffer[order], type=self.buffer_type)
        else:
            rows = _concat(self.chunks).take(self.slot_row[order])
        if isinstance(rows, pa.Array):
            rows = pa.table({"value": rows})
        return rows, self.slot_pos[order]


def _take(batch: pa.RecordBatch | pa.Array, rows: np.ndarray
          ) -> pa.RecordBatch | pa.Array:
    """``batch.take(rows)``; through numpy for fixed-width numbers without
    nulls, where Arrow's take costs more in dispatch than the few rows a
    reservoir keeps from a batch cost to copy."""
    import pyarrow as pa

    def fast(c: pa.Array) -> bool:
        return c.null_count == 0 and (pa.types.is_integer(c.type)
                                      or pa.types.is_floating(c.type))

    if isinstance(batch, pa.Array):
        return pa.array(batch.to_numpy()[rows], type=batch.type) if fast(
            batch) else batch.take(rows)
    if all(fast(c) for c in batch.columns):
        return pa.RecordBatch.from_arrays(
            [pa.array(c.to_numpy()[rows], type=c.type) for c in batch.columns],
            schema=batch.schema)
    return batch.take(rows)


def _concat(chunks: list) -> pa.Table | pa.Array:
    import pyarrow as pa

    if isinstance(chunks[0], pa.Array):
        return pa.concat_arrays(chunks)
    return pa.Table.from_batches(chunks).combine_chunks()


def _as_batch(batch: pa.RecordBatch | pa.Table | pa.Array | pa.ChunkedArray
              ) -> pa.RecordBatch | pa.Array:
    """One record batch, or one array (kept rows of bare arrays come back as
    the column ``value``)."""
    import pyarrow as pa

    if isinstance(batch, pa.ChunkedArray):
        return batch.combine_chunks()
    if isinstance(batch, pa.Table):
        return batch.combine_chunks().to_batches()[0] if batch.num_rows else \
            pa.RecordBatch.from_pylist([], schema=batch.schema)
    return batch


class Reservoir:
    """A uniform sample of ``k`` rows of a stream (Algorithm L).

    Parameters
    ----------
    k : int
        Rows to keep; a stream shorter than ``k`` is kept whole.
    seed : int
        The same seed and stream give the same sample.

    Examples
    --------
    >>> import pyarrow as pa
    >>> r = Reservoir(3, seed=1)
    >>> for start in range(0, 1000, 100):
    ...     r.add(pa.record_batch({"x": list(range(start, start + 100))}))
    >>> rows, positions = r.result()
    >>> rows.num_rows, r.seen
    (3, 1000)
    """

    BLOCK = 4096  # replacement positions drawn at a time

    def __init__(self, k: int, *, seed: int = 0):
        import numpy as np

        if k < 1:
            raise DataError(f"reservoir: k must be at least 1, got {k}")
        self.k = k
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._kept = _Kept(k)
        self._log_w = 0.0
        self._last = -1  # stream position of the last replacement drawn
        self._pos = np.empty(0, dtype=np.int64)   # replacements drawn, not reached
        self._slot = np.empty(0, dtype=np.int64)

    def _draw(self) -> None:
        """The next block of replacement positions and slots. The positions
        do not depend on the data: W shrinks by a factor U^(1/k) after each
        replacement, and the rows passed over before the next one are
        geometric with success probability W (Li 1994, Algorithm L)."""
        import numpy as np

        rng, n = self._rng, self.BLOCK
        step = np.log(1.0 - rng.random(n)) / self.k
        ends = self._log_w + np.cumsum(step)
        log_w = ends - step  # each gap uses W as it is before its replacement
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            # W underflows to 0 after a long stream: no row is kept any more
            gaps = np.floor(np.log(1.0 - rng.random(n)) / np.log1p(-np.exp(log_w)))
            pos = np.minimum(self._last + np.cumsum(gaps + 1), 2.0**62)
        pos = pos.astype(np.int64)
        self._log_w, self._last = float(ends[-1]), int(pos[-1])
        self._pos = np.concatenate([self._pos, pos])
        self._slot = np.concatenate([self._slot, rng.integers(0, self.k, n)])

    def add(self, batch: pa.RecordBatch | pa.Table | pa.Array) -> None:
        """Offer the rows of ``batch``, the next part of the stream."""
        import numpy as np

        batch = _as_batch(batch)
        m = len(batch)
        if m == 0:
            return
        start, k, end = self.seen, self.k, self.seen + m
        fill = min(max(k - start, 0), m)
        if fill:  # the first k rows fill the reservoir
            rows = np.arange(fill, dtype=np.int64)
            slots = np.arange(start, start + fill, dtype=np.int64)
            if start + fill == k:  # full: the first replacement comes next
                self._log_w = float(np.log(1.0 - self._rng.random())) / k
                self._last = k - 1
        if start + fill >= k:
            while self._last < end - 1:
                self._draw()
            n = int(self._pos.searchsorted(end))
            if fill:
                rows = np.concatenate([rows, self._pos[:n] - start])
                slots = np.concatenate([slots, self._slot[:n]])
            else:
                rows, slots = self._pos[:n] - start, self._slot[:n]
            self._pos, self._slot = self._pos[n:], self._slot[n:]
        self.seen = end
        if len(rows):
            self._kept.put(batch, rows, slots, rows + start)

    def extend(self, batches: Iterable) -> Reservoir:
        """Offer every batch of ``batches`` (a reader or any iterable)."""
        for b in batches:
            self.add(b)
        return self

    def result(self) -> tuple[pa.Table | None, np.ndarray]:
        """The kept rows in stream order, and their positions in the stream
        (``None`` and no position before any row was offered)."""
        return self._kept.table()

    def slots(self) -> np.ndarray:
        """The kept rows' slots, in the order of :meth:`result`."""
        return self._kept.slots()

    def state(self) -> dict:
        """What, with the kept rows and their :meth:`slots`, lets
        :meth:`restore` go on where this reservoir is, drawing what it would
        have drawn (JSON: the generator's state, W, the replacements drawn and
        not reached). A consumer stores it with each commit."""
        return {"kind": "uniform", "k": self.k, "seen": self.seen,
                "rng": self._rng.bit_generator.state, "log_w": self._log_w,
                "last": self._last, "pos": self._pos.tolist(),
                "slot": self._slot.tolist()}

    @classmethod
    def restore(cls, state: dict, rows: pa.Table | None, positions: np.ndarray,
                slots) -> Reservoir:
        """A reservoir as :meth:`state`, :meth:`result` and :meth:`slots`
        left it: fed the same rows after, it keeps what it would have kept."""
        import numpy as np

        r = cls(state["k"])
        r.seen, r._log_w, r._last = state["seen"], state["log_w"], state["last"]
        r._rng.bit_generator.state = state["rng"]
        r._pos = np.asarray(state["pos"], dtype=np.int64)
        r._slot = np.asarray(state["slot"], dtype=np.int64)
        _refill(r._kept, rows, positions, slots)
        return r


def _refill(kept: _Kept, rows, positions, slots) -> None:
    """Put restored rows back in their slots."""
    import numpy as np

    if rows is None or not rows.num_rows:
        return
    kept.put(_as_batch(rows), np.arange(rows.num_rows, dtype=np.int64),
             np.asarray(slots, dtype=np.int64), np.asarray(positions, dtype=np.int64))


class WeightedReservoir:
    """A weighted sample of ``k`` rows of a stream, without replacement
    (Efraimidis and Spirakis' A-ExpJ, with keys kept as logarithms so that
    long streams and tiny weights do not underflow).

    Each row is drawn with a probability proportional to its weight among the
    rows not drawn yet; for ``k = 1`` a row is kept with probability
    ``w_i / sum(w)``. Rows of weight 0 are never kept; a negative, infinite or
    missing weight is an error naming its stream position.

    Examples
    --------
    >>> import pyarrow as pa
    >>> r = WeightedReservoir(2, seed=0)
    >>> r.add(pa.record_batch({"x": [1, 2, 3]}), weights=[0.0, 1.0, 5.0])
    >>> sorted(r.result()[0].column("x").to_pylist())
    [2, 3]
    """

    def __init__(self, k: int, *, seed: int = 0):
        if k < 1:
            raise DataError(f"weighted reservoir: k must be at least 1, got {k}")
        self.k = k
        self.seen = 0
        self._rng = random.Random(seed)
        self._kept = _Kept(k)
        self._heap: list[tuple[float, int]] = []  # (log key, slot), min first
        self._x = 0.0  # weight still to pass over before the next row kept

    def _jump(self) -> float:
        # log(U) / log(T), with T the smallest key kept: the weight to pass over
        return math.log(1.0 - self._rng.random()) / self._heap[0][0]

    def add(self, batch: pa.RecordBatch | pa.Table | pa.Array, weights) -> None:
        """Offer the rows of ``batch`` with their ``weights`` (array-like)."""
        import numpy as np

        batch = _as_batch(batch)
        w = np.asarray(weights, dtype=np.float64)
        m = len(batch)
        if len(w) != m:
            raise DataError(f"weighted reservoir: {len(w)} weights for {m} rows")
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"weighted reservoir: the weight of row {self.seen + i} "
                            f"of the stream is {w[i]}; weights must be finite and "
                            f">= 0")
        start, k, rng = self.seen, self.k, self._rng
        rows: list[int] = []
        slots: list[int] = []
        i = 0
        while len(self._heap) < k and i < m:  # fill with the first k positive rows
            if w[i] > 0:
                slot = len(self._heap)
                key = math.log(1.0 - rng.random()) / w[i]
                heapq.heappush(self._heap, (key, slot))
                rows.append(i)
                slots.append(slot)
                if len(self._heap) == k:
                    self._x = self._jump()
            i += 1
        if len(self._heap) == k and i < m:
            cw = np.cumsum(w[i:])
            base = 0.0
            while True:
                j = int(np.searchsorted(cw, base + self._x, side="left"))
                if j >= len(cw):
                    self._x -= float(cw[-1]) - base
                    break
                wj = float(w[i + j])
                log_t = self._heap[0][0]
                # the new key is uniform on (T^w, 1): drawn in logs
                t = math.exp(wj * log_t)
                key = math.log(t + (1.0 - t) * (1.0 - rng.random())) / wj
                slot = self._heap[0][1]  # the smallest key makes room
                heapq.heapreplace(self._heap, (min(key, -1e-300), slot))
                rows.append(i + j)
                slots.append(slot)
                base = float(cw[j])
                self._x = self._jump()
        self.seen = start + m
        if rows:
            r = np.asarray(rows, dtype=np.int64)
            self._kept.put(batch, r, np.asarray(slots, dtype=np.int64), r + start)

    def result(self) -> tuple[pa.Table | None, np.ndarray]:
        """The kept rows in stream order, and their stream positions."""
        return self._kept.table()

    def slots(self) -> np.ndarray:
        """The kept rows' slots, in the order of :meth:`result`."""
        return self._kept.slots()

    def keys(self) -> np.ndarray:
        """The kept rows' keys (logarithms), in the order of :meth:`result`."""
        import numpy as np

        by_slot = {slot: key for key, slot in self._heap}
        return np.asarray([by_slot[int(s)] for s in self.slots()], dtype=np.float64)

    def state(self) -> dict:
        """What, with the kept rows and their :meth:`keys`, lets
        :meth:`restore` go on where this reservoir is (JSON)."""
        version, inner, gauss = self._rng.getstate()
        return {"kind": "weighted", "k": self.k, "seen": self.seen,
                "rng": [version, list(inner), gauss], "x": self._x}

    @classmethod
    def restore(cls, state: dict, rows: pa.Table | None, positions: np.ndarray,
                slots, keys) -> WeightedReservoir:
        """A weighted reservoir as :meth:`state`, :meth:`result`,
        :meth:`slots` and :meth:`keys` left it."""
        r = cls(state["k"])
        r.seen, r._x = state["seen"], state["x"]
        version, inner, gauss = state["rng"]
        r._rng.setstate((version, tuple(inner), gauss))
        _refill(r._kept, rows, positions, slots)
        r._heap = [(float(key), int(slot)) for slot, key in zip(slots, keys,
                                                                 strict=True)]
        heapq.heapify(r._heap)
        return r
