"""`mlsd run --set KEY=VALUE`: a setting changed for one run, not in the file."""

from __future__ import annotations

import json

import pytest

from mlsd.errors import SpecError
from mlsd.spec import apply_overrides
from tests._helpers import run_cli


def test_apply_overrides_sets_keys_items_and_new_sections():
    doc = {"split": {"strategy": "time"}, "features": [{"column": "a"},
                                                       {"column": "b"}]}
    out = apply_overrides(doc, ["split.gap=7d", "features[1].encode=onehot",
                                "imbalance.compare=[smote, tomek]",
                                "sample={method: random, n: 5}", "seed=7"])
    assert out["split"] == {"strategy": "time", "gap": "7d"}
    assert out["features"][1] == {"column": "b", "encode": "onehot"}
    assert out["imbalance"] == {"compare": ["smote", "tomek"]}
    assert out["sample"] == {"method": "random", "n": 5} and out["seed"] == 7
    assert doc["split"] == {"strategy": "time"}  # the original is untouched
    for bad, msg in [("split.gap", "expected KEY=VALUE"),
                     ("features[5].encode=x", r"no item \[5\]"),
                     ("split.strategy.x=1", "'x' is not under a mapping"),
                     ("a..b=1", "is not a key")]:
        with pytest.raises(SpecError, match=msg):
            apply_overrides(doc, [bad])


def test_run_with_set_changes_one_run_only(fresh_project):
    before = (fresh_project / "mlsd.yaml").read_text()
    proc = run_cli("run", "--until", "split", "--json", "--set",
                   "sample={method: random, n: 300}", "--set", "split.gap=1d",
                   cwd=fresh_project)
    s = json.loads(proc.stdout)
    assert s["sample"]["rows"] == 300 and s["split"]["gap"] == "1d"
    assert (fresh_project / "mlsd.yaml").read_text() == before
    bad = run_cli("run", "--set", "split.gapp=1d", cwd=fresh_project, check=False)
    assert bad.returncode == 2 and "split.gapp: unknown key" in bad.stderr


def test_augment_columns_are_checked_before_any_stage_runs(fresh_project):
    bad = run_cli("run", "--set", "augment.text={column: likes}", "--set",
                  "augment.noise={columns: [nope]}", cwd=fresh_project, check=False)
    assert bad.returncode == 2
    assert "augment.noise.columns[0]: column 'nope' is not in the data" in bad.stderr
    assert "augment.text.column: 'likes' is int64; text needed" in bad.stderr
    assert not (fresh_project / ".mlsd" / "lake").exists()  # nothing was loaded
