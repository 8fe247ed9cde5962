from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import yaml
from deltalake import DeltaTable

from mlsd.pipeline import Project, ingest, run
from tests._helpers import run_cli


def _write(folder, transform, rows):
    spec = {"name": "shop", "problem": {"task": "regression", "target": "paid"},
            "sources": {"orders": {"path": "data/orders.csv", "key": "id"}},
            "validate": {"required": ["id"], "allowed": {"status": ["new", "paid"]}},
            "transform": transform,
            "split": {"strategy": "random", "test": 0.2, "valid": 0.2},
            "features": [{"column": "total"}, {"column": "dist"}],
            "model": {"kind": "linear"}}
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "schemas").mkdir(exist_ok=True)
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    (folder / "schemas/orders.yaml").write_text(yaml.safe_dump({"columns": {
        "id": "int64", "status": "string", "price": "float64", "qty": "int64",
        "dist": "float64", "unit": "string", "updated": "int64",
        "paid": "float64"}}))
    lines = ["id,status,price,qty,dist,unit,updated,paid"] + rows
    (folder / "data/orders.csv").write_text("\n".join(lines) + "\n")
    return Project.find(start=folder)


def _stored(folder):
    t = DeltaTable(str(folder / ".mlsd/lake/sources/orders")).to_pyarrow_table()
    return sorted(t.to_pylist(), key=lambda r: r["id"])


def test_clean_convert_dedupe_and_derive(tmp_path):
    transform = {"trim": True, "lower": ["status"],
                 "units": {"dist": {"unit_column": "unit", "to": "m",
                                    "factors": {"km": 1000, "m": 1, "cm": 0.01}}},
                 "dedupe": {"key": ["id"], "keep_latest_by": "updated"},
                 "derive": {"total": "price * qty"}}
    p = _write(tmp_path, transform, [
        "1,  PAID ,2.5,4,1.5,km,1,10", "2,new,1,1,30,cm,1,1",
        "3,new,1,1,5,miles,1,1",          # unknown unit: quarantined
        "1,paid,3,4,2,km,5,12",           # a later version of id 1: kept
        "1,paid,9,9,9,km,3,99",           # an older version: deduped away
    ])
    res = ingest(p)["sources"][0]
    assert (res["rows_in"], res["rows_stored"], res["rows_quarantined"]) == (5, 2, 3)
    assert res["reasons"] == {"dist: unit": 1, "id: dedupe": 2} or res["reasons"] \
        == {"id: dedupe": 2, "dist: unit": 1}
    rows = _stored(tmp_path)
    assert [(r["id"], r["status"], r["dist"], r["unit"], r["total"]) for r in rows] \
        == [(1, "paid", 2000.0, "m", 12.0), (2, "new", 0.3, "m", 1.0)]
    q = DeltaTable(str(tmp_path / ".mlsd/lake/quarantine/orders")).to_pyarrow_table()
    assert sorted(q.column("_line").to_pylist()) == [2, 4, 6]


def test_derived_columns_serve_like_they_train(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1, 301):
        price, qty = round(float(rng.uniform(1, 9)), 2), int(rng.integers(1, 5))
        rows.append(f"{i},paid,{price},{qty},{i},m,1,{price * qty + rng.normal()}")
    p = _write(tmp_path, {"derive": {"total": "price * qty"}}, rows)
    summary = run(p)
    model = json.loads((tmp_path / summary["paths"]["model"] / "input_schema.json")
                       .read_text())
    assert model["derive"] == {"total": "price * qty"}
    assert "total" not in model["columns"]
    assert summary["model"]["metrics"]["model"]["test"]["r2"] > 0.9
    (tmp_path / "new.csv").write_text("id,status,price,qty,dist,unit,updated\n"
                                      "1000,paid,2,3,1,m,1\n")
    out = tmp_path / "s.parquet"
    run_cli("predict", "-i", "new.csv", "-o", str(out), cwd=tmp_path)
    assert abs(pq.read_table(out).column("prediction")[0].as_py() - 6) < 1.5
