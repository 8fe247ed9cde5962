"""The scale-out engine: mlsd's own code run as Spark tasks (PySpark).

Spark distributes the work; mlsd keeps its promises. A stage hands the engine
a list of *units* (a file to read, a range of rows to score) and a pure
function of Arrow batches; the engine runs the function over the units as
Spark tasks through ``mapInArrow`` (one unit a partition, so a failed task is
retried on its own unit) and hands the small results back to the driver.
The rows themselves never pass through the driver: tasks read their inputs
and write their outputs next to the lake, where the driver commits them.

One session a process, made on first use and shared (a JVM starts in ~5 s):
``local[N]`` on this machine, a cluster's master, or a Spark Connect server
(``remote: sc://host:15002``). Executors import mlsd, so on a cluster it must
be installed there, and the lake must be on storage every node sees: a
shared folder, or object storage (``lake.url``), whose files tasks read and
write with pyarrow, given the driver's credentials for the store.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import SpecError
from ..spec import EngineSpec

_views = itertools.count()
_sessions: dict[tuple, Any] = {}
_lock = threading.Lock()


def spark_session(spec: EngineSpec):
    """The process's Spark session for ``spec`` (made once, then shared)."""
    key = (spec.remote, spec.master, tuple(sorted(spec.conf.items())))
    with _lock:
        found = _sessions.get(key)
        if found is not None:
            return found
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise SpecError("engine: spark needs PySpark and Java 17: pip install "
                            "'mlsd[spark]'") from None
        builder = SparkSession.builder.appName("mlsd")
        local = spec.remote is None and spec.master.startswith("local")
        if spec.remote is not None:
            _answers(spec.remote)
            builder = builder.remote(spec.remote)
        else:
            builder = builder.master(spec.master)
        defaults = {"spark.sql.session.timeZone": "UTC"}
        if spec.remote is None:  # a Connect server's own settings are its own
            defaults |= {"spark.ui.showConsoleProgress": "false",  # Rich shows it
                         "spark.sql.execution.arrow.pyspark.enabled": "true"}
        if local:
            # the Python workers are this interpreter (mlsd importable); a
            # laptop's run opens no web UI port, binds to loopback and logs
            # only Spark's errors
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            log4j = Path(__file__).with_name("log4j2.properties")
            # a shuffle in as many pieces as the cores can take at once (twice),
            # not Spark's 200, which on one machine cost more than they share
            cores = spec.master[6:-1].split(",")[0] if spec.master.startswith(
                "local[") else "1"
            cores = (os.cpu_count() or 2) if cores == "*" else int(cores)
            defaults |= {"spark.sql.shuffle.partitions": str(2 * cores),
                         "spark.ui.enabled": "false",
                         "spark.driver.extraJavaOptions":
                             f"-Dlog4j2.configurationFile=file:{log4j}"}
        for k, v in {**defaults, **spec.conf}.items():
            builder = builder.config(k, v)
        try:
            session = builder.getOrCreate()
        except Exception as err:  # noqa: BLE001 - Py4J's or the JVM's
            raise SpecError(f"engine: cannot start Spark ({spec.remote or spec.master}"
                            f"): {type(err).__name__}: {str(err)[:300]}") from None
        if spec.remote is None:
            session.sparkContext.setLogLevel("ERROR")
        _sessions[key] = session
        return session


_TOLD = re.compile(r"^mlsd\.errors\.(\w+): (.+)$", re.MULTILINE)


def told_by_a_task(err: BaseException) -> Exception | None:
    """The mlsd error a Spark task raised (a bad file, a store it cannot
    reach), as the driver's own exception: PySpark hands it back wrapped,
    its message the worker's whole traceback. None for anything else."""
    if not type(err).__module__.startswith(("pyspark", "py4j")):
        return None
    found = _TOLD.findall(str(err))
    if not found:
        return None
    from .. import errors

    name, message = found[-1]
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, errors.MlsdError)):
        return None
    return kind(message)


def _answers(remote: str, timeout: float = 5.0) -> None:
    """Raise a clear error unless something listens at a Spark Connect
    address: its client would otherwise retry, silent, for minutes."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(remote.split(";")[0].replace("sc://", "http://", 1))
    host, port = where.hostname or "localhost", where.port or 15002
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise SpecError(f"engine.remote: no Spark Connect server answers at "
                        f"{host}:{port} ({err.strerror or err}); start one "
                        f"(sbin/start-connect-server.sh) or set engine.master "
                        f"instead") from None


class SparkEngine:
    """Runs functions of Arrow batches over units of work as Spark tasks.

    Parameters
    ----------
    spec : EngineSpec
        The project's ``engine:`` settings (master or remote, conf).
    """

    name = "spark"

    def __init__(self, spec: EngineSpec | None = None, *, store: str | None = None):
        self.spec = spec or EngineSpec(kind="spark")
        self.store = store  # the lake's URL when it is on object storage

    @property
    def session(self):
        session = spark_session(self.spec)
        if self.store is not None and self.spec.remote is None:
            from ..lake._store import store_environment

            # the store's credentials and endpoint, as the driver has them, to
            # the Python workers of the jobs submitted from now on (PySpark
            # gives each function the context's environment when it is made);
            # a Spark Connect server's executors use their own
            session.sparkContext.environment.update(store_environment(self.store))
        return session

    def describe(self) -> str:
        return self.spec.remote or self.spec.master

    def parallelism(self) -> int:
        """How many tasks the cluster runs at once (a local[N] master: N)."""
        if self.spec.remote is None:
            return int(self.session.sparkContext.defaultParallelism)
        value = self.session.conf.get("spark.default.parallelism", None)
        return int(value) if value else 2

    def map_units(self, units: list[Any],
                  fn: Callable[[Any], Iterator[dict[str, Any]]],
                  schema: pa.Schema) -> pa.Table:
        """``fn(unit)`` for every unit, each unit its own Spark task; the rows
        they yield (dicts of ``schema``) as one table, units in no set order.

        ``fn`` and the units are shipped to the executors (cloudpickle): keep
        them small (paths, specs as JSON), never rows.
        """
        if not units:
            return schema.empty_table()
        from pyspark.sql.pandas.types import from_arrow_schema

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                for i in batch.column("id").to_pylist():
                    rows = list(fn(units[i]))
                    if rows:
                        yield pa.RecordBatch.from_pylist(rows, schema=schema)

        # spark.range with one partition a unit: unit i is task i, exactly
        ids = self.session.range(0, len(units), 1, numPartitions=len(units))
        out = ids.mapInArrow(run, from_arrow_schema(schema)).toArrow()
        return out.cast(schema)

    def gather(self, frame, fn: Callable[[pa.Table], pa.Table | None],
               schema: pa.Schema, folder: str | Path,
               before_read: Callable[[int], Callable[[pa.Table], pa.Table] | None]
               | None = None) -> pa.Table:
        """``fn`` of each of ``frame``'s Arrow batches, run by Spark tasks,
        whose outputs the tasks write as Arrow IPC files in ``folder`` (which
        every node must see) and which are read here, then deleted: large
        outputs never pass through the JVM driver's memory (collecting 3
        million rows of features that way lost task results past its heap);
        ``folder`` may be on object storage (:meth:`Lake.scratch`).
        ``before_read`` is given the files' bytes first (it may raise: the
        files are removed all the same); what it returns, if anything, filters
        each file as it is read (the driver then holds only the rows kept).
        Rows come in no set order: ``fn`` keeps what orders them."""
        import uuid

        from ..lake._store import locate, make_dirs, remove

        folder = str(folder)
        make_dirs(folder)
        job = uuid.uuid4().hex[:12]

        def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from pyspark import TaskContext

            fs, base = locate(folder)
            part = TaskContext.get().partitionId()
            for i, batch in enumerate(batches):
                out = fn(pa.Table.from_batches([batch]))
                if out is None or not out.num_rows:
                    continue
                name = f"{job}-p{part:06d}-b{i:06d}.arrow"
                with fs.open_output_stream(f"{base}/{name}") as sink, \
                        pa.ipc.new_file(sink, out.schema) as w:
                    w.write_table(out.cast(schema))
                yield pa.RecordBatch.from_pydict({"path": [name]})
        try:
            names = frame.mapInArrow(task, "path string").toArrow().column(
                "path").to_pylist()
            fs, base = locate(folder)
            keep = None
            if before_read is not None:
                keep = before_read(sum(f.size for f in fs.get_file_info(
                    [f"{base}/{name}" for name in names])))
            parts = []
            for name in names:
                with fs.open_input_file(f"{base}/{name}") as source:
                    part = pa.ipc.open_file(source).read_all()
                    parts.append(part if keep is None else keep(part))
        finally:
            remove(folder)
        return pa.concat_tables(parts) if parts else schema.empty_table()

    @property
    def ibis(self) -> SparkIbis:
        """The features' engine interface (``aggregate``, ``to_arrow``,
        ``from_arrow``, ``batches``, ``forget``) on this session, through
        Ibis's PySpark backend: the analyzers' Ibis expressions run as Spark
        SQL unchanged."""
        found = self.__dict__.get("_ibis")
        if found is None:
            found = self._ibis = SparkIbis(self.session)
        return found

    def frame(self, lake, area: str, name: str, version: int | None = None,
              columns: list[str] | None = None):
        """One version of a lake dataset as a Spark DataFrame (``columns`` of
        it, default all): its Parquet files, read by Spark (Delta's Spark
        package, which fetches jars at run time, is not needed:
        ``deltalake`` names the version's files)."""
        arrow, uris = lake.files(area, name, version)
        if columns is not None:  # read only these (a task on the store reads
            # what it is told; Spark's own reader would prune them itself)
            missing = [c for c in columns if c not in arrow.names]
            if missing:
                raise KeyError(f"{area}/{name} has no column {missing[0]!r}")
            arrow = pa.schema([arrow.field(c) for c in columns])
        return self.read_parquet(uris, arrow)

    def read_parquet(self, uris: list[str], schema: pa.Schema):
        """Parquet files as one DataFrame of ``schema`` (a column a file does
        not have is null). Local files (``file://``, paths) are read by
        Spark's own reader; files on object storage by pyarrow in Spark tasks,
        one file a task (Spark's ``s3a://`` reader needs the hadoop-aws jars
        on the cluster, which mlsd cannot count on; pyarrow reads the store
        as the rest of mlsd does, with the credentials :attr:`session` gives
        the executors)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        from ..lake._store import is_url

        spark_schema = from_arrow_schema(schema)
        if not uris:
            return self.session.createDataFrame([], spark_schema)
        if not any(is_url(u) and not u.startswith("file://") for u in uris):
            return self.session.read.schema(spark_schema).parquet(*uris)

        def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            import pyarrow.parquet as pq

            from ..lake._store import locate

            for batch in batches:
                for i in batch.column("id").to_pylist():
                    fs, path = locate(uris[i])
                    with fs.open_input_file(path) as source:
                        pf = pq.ParquetFile(source)
                        have = set(pf.schema_arrow.names)
                        wanted = [c for c in schema.names if c in have]
                        if not wanted:  # columns added since: its rows, all null
                            n = pf.metadata.num_rows
                            for at in range(0, n, 65_536):
                                k = min(65_536, n - at)
                                yield pa.RecordBatch.from_arrays(
                                    [pa.nulls(k, f.type) for f in schema],
                                    schema=schema)
                            continue
                        for b in pf.iter_batches(batch_size=65_536, columns=wanted):
                            yield pa.RecordBatch.from_arrays([
                                b.column(f.name).cast(f.type) if f.name in have
                                else pa.nulls(b.num_rows, f.type) for f in schema],
                                schema=schema)

        ids = self.session.range(0, len(uris), 1, numPartitions=len(uris))
        return ids.mapInArrow(task, spark_schema)

    def write_parts(self, frame, folder, schema: pa.Schema, *,
                    row_column: str | None = None, file_rows: int = 512 * 1024
                    ) -> list[dict[str, Any]]:
        """Write a DataFrame as Parquet parts of a lake dataset's ``folder``
        (:meth:`Lake.location`: a folder or a store's URL; tasks write them;
        :meth:`Lake.commit_parts` adds them, in the frame's order; extra
        columns are left out). ``row_column``: each
        row's position in that order (0, 1, ...), numbered from the
        partitions' sizes."""
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        from ..lake import write_part
        from ..lake._store import make_dirs

        folder = str(folder)
        make_dirs(folder)
        offsets: dict[int, int] = {}
        # monotonically_increasing_id holds the partition in its upper bits:
        # parts are put back in partition order, and a partition's rows are
        # numbered from the rows of the partitions before it (the frame is then
        # kept, so both passes see the same rows)
        frame = frame.withColumn("__mid", F.monotonically_increasing_id())
        if row_column is not None:
            frame = frame.persist()
            sizes = frame.groupBy(F.shiftright("__mid", 33).alias("p")).count()
            at = 0
            for r in sorted(sizes.collect(), key=lambda r: r["p"]):
                offsets[int(r["p"])], at = at, at + int(r["count"])
        out = pa.schema([("p", pa.int64()), ("seq", pa.int64()), ("path", pa.string()),
                         ("size", pa.int64()), ("mtime", pa.int64()),
                         ("rows", pa.int64())])

        def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            held: list[pa.RecordBatch] = []
            seq = 0
            part = -1

            def flush():
                nonlocal seq
                t = pa.Table.from_batches(held) if held else None
                held.clear()
                if t is None or not t.num_rows:
                    return None
                if row_column is not None:
                    import pyarrow.compute as pc

                    mid = t.column("__mid")
                    rows = pc.add(pc.bit_wise_and(mid, (1 << 33) - 1), offsets[part])
                    t = t.append_column(row_column, rows)
                written = write_part(folder, t.select(schema.names).cast(schema))
                seq += 1
                return pa.RecordBatch.from_pylist([{"p": part, "seq": seq, **written}],
                                                  schema=out)

            for b in batches:
                if not b.num_rows:
                    continue
                if part < 0:
                    part = b.column("__mid")[0].as_py() >> 33
                held.append(b)
                if sum(x.num_rows for x in held) >= file_rows:
                    if (done := flush()) is not None:
                        yield done
            if (done := flush()) is not None:
                yield done

        try:
            got = frame.mapInArrow(task, from_arrow_schema(out)).toArrow().to_pylist()
        finally:
            if row_column is not None:
                frame.unpersist()
        got.sort(key=lambda r: (r["p"], r["seq"]))  # the frame's order
        return [{k: r[k] for k in ("path", "size", "mtime", "rows")} for r in got]


class SparkIbis:
    """:class:`~mlsd.engine.DuckDBEngine`'s Ibis interface on a Spark session
    (Ibis's PySpark backend): the feature analyzers' expressions compile to
    Spark SQL (quantiles to Spark's exact ``percentile``, as DuckDB's
    ``quantile_cont``). A DataFrame becomes an Ibis table as a temporary view
    (:meth:`from_frame`); rows keep the DataFrame's order in
    :meth:`batches` (Spark keeps a sort's order through projections)."""

    name = "spark"
    supports_streaming = True

    def __init__(self, session):
        import ibis

        self.session = session
        self.con = ibis.pyspark.connect(session)

    def from_frame(self, frame):
        """A Spark DataFrame as an Ibis table (a temporary view)."""
        view = f"mlsd_{os.getpid()}_{next(_views)}"
        frame.createOrReplaceTempView(view)
        return self.con.table(view)

    def from_arrow(self, table: pa.Table):
        """An Arrow table (small: it goes through the driver) as an Ibis table."""
        from pyspark.sql.pandas.types import from_arrow_schema

        return self.from_frame(self.session.createDataFrame(
            table, schema=from_arrow_schema(table.schema)))

    def forget(self, table) -> None:
        name = table.get_name()
        if name.startswith("mlsd_"):
            self.session.catalog.dropTempView(name)

    def to_arrow(self, expr) -> pa.Table:
        return self.con.to_pyarrow(expr)

    def batches(self, expr, rows: int = 65_536):
        return self.con.to_pyarrow_batches(expr, chunk_size=rows)

    def aggregate(self, table, **metrics) -> dict[str, Any]:
        if not metrics:
            return {}
        return self.to_arrow(table.aggregate(**metrics)).to_pylist()[0]
