"""The SQL connector against real servers: the OLTP-to-OLAP path of the course.

An OLTP-style ``orders`` table is written by the test, extracted incrementally
twice (the second run reads only the new rows), then analysed with DuckDB.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from deltalake import DeltaTable

from mlsd.connectors import SqlConnector
from mlsd.errors import DataError
from mlsd.pipeline import Project, ingest, sql
from tests._helpers import require_service

STATUSES = ["new", "paid", "shipped", "returned"]


def _postgres():
    require_service("PostgreSQL", 5432)
    import psycopg

    db = f"mlsd_test_{secrets.token_hex(4)}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                         autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                         autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _mariadb():
    require_service("MariaDB", 3306)
    import pymysql

    db = f"mlsd_test_{secrets.token_hex(4)}"
    con = pymysql.connect(host="127.0.0.1", user="root", password="")
    with con.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
    yield f"mysql+pymysql://root@127.0.0.1:3306/{db}"
    with con.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    con.close()


def _sqlite(tmp_path_factory):
    yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'shop.db'}"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request, tmp_path_factory):
    gen = {"sqlite": lambda: _sqlite(tmp_path_factory), "postgresql": _postgres,
           "mariadb": _mariadb}[request.param]()
    url = next(gen)
    yield url
    next(gen, None)


def _orders_table(meta: sa.MetaData) -> sa.Table:
    return sa.Table(
        "orders", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer", sa.String(64), nullable=False),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("status", sa.String(16)),
        sa.Column("created_at", sa.DateTime),
    )


def _insert(engine: sa.Engine, table: sa.Table, start: int, n: int,
            extra: list[dict] | None = None) -> None:
    t0 = datetime(2024, 3, 1)
    rows = [{"customer": f"c{(start + i) % 37}",
             "amount": Decimal(f"{(start + i) % 500}.{(start + i) % 100:02d}"),
             "status": STATUSES[(start + i) % 4],
             "created_at": t0 + timedelta(minutes=start + i)} for i in range(n)]
    with engine.begin() as con:
        con.execute(sa.insert(table), rows + (extra or []))


def _project(folder: Path, url: str, **source) -> Project:
    spec = {
        "name": "shop",
        "problem": {"task": "regression", "target": "amount"},
        "sources": {"orders": {"url": url, "table": "orders", "key": "id",
                               "watermark": "id", "chunk_rows": 128, **source}},
        "validate": {"required": ["id", "customer"], "ranges": {"amount": [0, None]},
                     "allowed": {"status": STATUSES}},
        "features": [{"column": "status", "encode": "onehot"}],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    return Project.find(start=folder)


def test_incremental_extraction_then_olap(tmp_path, db_url):
    engine = sa.create_engine(db_url)
    meta = sa.MetaData()
    orders = _orders_table(meta)
    meta.create_all(engine)
    _insert(engine, orders, 0, 1000)
    project = _project(tmp_path / "p", db_url)

    first = ingest(project)["sources"][0]
    assert (first["rows_in"], first["rows_stored"], first["rows_quarantined"]) == (
        1000, 1000, 0)
    assert first["version"] == 0 and first["mode"] == "append"
    assert first["watermark"] == "1000"
    frozen = yaml.safe_load((tmp_path / "p/schemas/orders.yaml").read_text())
    assert frozen["columns"] == {"id": "int64", "customer": "string",
                                 "amount": "float64", "status": "string",
                                 "created_at": "timestamp"}

    # new rows, one of them breaking two rules, one with a hostile string
    _insert(engine, orders, 1000, 500, extra=[
        {"customer": "x", "amount": Decimal("-5.00"), "status": "lost",
         "created_at": datetime(2024, 5, 1)},
        {"customer": "'; DROP TABLE orders; --", "amount": Decimal("1.00"),
         "status": "new", "created_at": datetime(2024, 5, 1)}])
    second = ingest(project)["sources"][0]
    assert (second["rows_in"], second["rows_stored"], second["rows_quarantined"]) == (
        502, 501, 1)
    assert second["version"] == 1 and second["watermark"] == "1502"
    assert second["reasons"] == {"amount: range": 1, "status: allowed": 1}

    # nothing new: no new version, nothing read
    third = ingest(project)["sources"][0]
    assert third["skipped"] and third["rows_in"] == 0 and third["version"] == 1
    lake_rows = DeltaTable(str(tmp_path / "p/.mlsd/lake/sources/orders"))
    assert lake_rows.version() == 1
    stored = lake_rows.to_pyarrow_table()
    assert stored.num_rows == 1501
    assert sorted(stored.column("id").to_pylist()) == [i for i in range(1, 1503)
                                                       if i != 1501]
    assert "'; DROP TABLE orders; --" in stored.column("customer").to_pylist()
    # the watermark is in the Delta commit itself and in the catalog
    history = lake_rows.history(1)[0]
    assert '"value": 1502' in history["mlsd.watermark"]
    assert '"value": 1502' in project.catalog.last_watermark("orders")

    # OLAP: the same aggregate in DuckDB over the lake and in the OLTP database
    olap = sql(project, "SELECT status, count(*) AS n, round(sum(amount), 2) AS total"
                        " FROM orders GROUP BY status ORDER BY status").to_pylist()
    with engine.connect() as con:
        oltp = con.execute(sa.text(
            "SELECT status, count(*), sum(amount) FROM orders WHERE amount >= 0 "
            "GROUP BY status ORDER BY status")).all()
    assert [(r["status"], r["n"]) for r in olap] == [(s, n) for s, n, _ in oltp]
    assert [r["total"] for r in olap] == [pytest.approx(float(t)) for _, _, t in oltp]
    engine.dispose()


def test_a_query_source_and_a_snapshot_without_watermark(tmp_path, db_url):
    engine = sa.create_engine(db_url)
    meta = sa.MetaData()
    orders = _orders_table(meta)
    meta.create_all(engine)
    _insert(engine, orders, 0, 300)
    project = _project(tmp_path / "p", db_url, table=None, watermark=None,
                       query="SELECT id, customer, amount, status, created_at "
                             "FROM orders WHERE status <> 'returned'")
    first = ingest(project)["sources"][0]
    assert first["rows_in"] == 225 and first["mode"] == "overwrite"
    again = ingest(project)["sources"][0]
    assert again["skipped"] and again["version"] == first["version"]  # same rows
    _insert(engine, orders, 300, 4)
    third = ingest(project)["sources"][0]
    assert third["rows_in"] == 228 and third["version"] == first["version"] + 1
    engine.dispose()


def test_identifiers_cannot_inject(tmp_path, db_url):
    engine = sa.create_engine(db_url)
    meta = sa.MetaData()
    meta.create_all(engine, tables=[_orders_table(meta)])
    _insert(engine, meta.tables["orders"], 0, 3)
    for table in ("orders; DROP TABLE orders", 'orders" --', "../orders"):
        with pytest.raises(DataError, match="no table"):
            SqlConnector(url=db_url, table=table).columns()
    with pytest.raises(DataError, match="watermark column"):
        SqlConnector(url=db_url, table="orders",
                     watermark="id; DROP TABLE orders").plan()
    with engine.connect() as con:  # still there, untouched
        assert con.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 3
    engine.dispose()


def test_password_from_the_environment(monkeypatch):
    c = SqlConnector(url="postgresql+psycopg://u@127.0.0.1/db", table="t",
                     password_env="MLSD_TEST_PW")
    with pytest.raises(DataError, match="MLSD_TEST_PW"):
        c.engine()
    monkeypatch.setenv("MLSD_TEST_PW", "s3cret")
    assert "s3cret" not in c.display and c._url().password == "s3cret"
