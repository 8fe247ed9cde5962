from __future__ import annotations

import pytest
import yaml

from mlsd.errors import SpecError
from mlsd.examples._forum_spam import SPEC
from mlsd.spec import json_schema, parse_spec, spec_hash


def _doc():
    return yaml.safe_load(SPEC)


def test_example_spec_parses():
    spec = parse_spec(_doc())
    assert spec.problem.task == "binary"
    assert spec.union == ["posts_export", "posts_log"]
    assert spec.key == "post_id"
    assert [f.kind for f in spec.features][-4:] == ["onehot", "hashing",
                                                     "hashed_ngrams", "time"]


@pytest.mark.parametrize("edit, path, words", [
    (lambda d: d.update(colour="red"), "colour", "unknown key"),
    (lambda d: d["problem"].update(task="ranking"), "problem.task", "binary"),
    (lambda d: d["features"][2].update(encode="onehott"), "features[2]",
     "unknown encoder 'onehott'"),
    (lambda d: d["features"][8].update(encode=["hour", "minute"]), "features[8]",
     "unknown time part 'minute'"),
    (lambda d: d["features"][0].update(impute="mode"), "features[0]",
     "unknown imputer"),
    (lambda d: d["split"].update(strategy="time", time=None), "split",
     "needs `time`"),
    (lambda d: d["split"].update(test=1.5), "split.test", "less than 1"),
    (lambda d: d["dataset"].update(union=["posts_export", "nope"]), "(top level)",
     "unknown source 'nope'"),
    (lambda d: d["features"].append({"column": "is_spam"}), "(top level)",
     "target 'is_spam' cannot be a feature"),
    (lambda d: d["problem"].update(threshold="cost"), "problem",
     "needs a `costs` matrix"),
    (lambda d: d.pop("problem"), "problem", "required key is missing"),
    (lambda d: d["problem"].update(metrics=["prauc"]), "problem",
     "unknown metric 'prauc' for a binary task (did you mean 'pr_auc'?)"),
    (lambda d: d["problem"].update(task="regression", positive=None,
                                   metrics=["f1"]), "problem", "rmse, mae, r2"),
    (lambda d: d["sources"].update({"../evil": {"path": "x.csv"}}), "(top level)",
     "invalid name"),
])
def test_errors_name_the_yaml_path(edit, path, words):
    doc = _doc()
    edit(doc)
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    paths = [p for p, _ in info.value.problems]
    assert path in paths, (paths, str(info.value))
    assert words in str(info.value)


def test_several_mistakes_are_all_reported():
    doc = _doc()
    doc["seed"] = "abc"
    doc["model"]["kind"] = "xgb"
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    assert {"seed", "model.kind"} <= {p for p, _ in info.value.problems}


def test_hash_ignores_formatting_not_meaning():
    a = parse_spec(_doc())
    b = parse_spec(yaml.safe_load(yaml.safe_dump(_doc(), sort_keys=True)))
    assert spec_hash(a) == spec_hash(b)
    doc = _doc()
    doc["seed"] = 7
    assert spec_hash(parse_spec(doc)) != spec_hash(a)


def test_json_schema_describes_the_file():
    schema = json_schema()
    assert schema["additionalProperties"] is False
    assert "validate" in schema["properties"]
    assert schema["$defs"]["FeatureSpec"]["additionalProperties"] is False
