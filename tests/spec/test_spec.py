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
    # feature settings: each kind reads its own; a stray one is a mistake
    (lambda d: d["features"][6].update(max_categories=5), "features[6]",
     "max_categories: does not apply to a hashing feature (it is read by: onehot, "
     "frequency, target)"),
    (lambda d: d["features"][0].update(buckets=8), "features[0]",
     "a numeric feature reads impute, fill_value, scale"),
    (lambda d: d["features"].append({"column": "views", "encode": "bins",
                                     "bins": 4, "strategy": "edges"}),
     "features[9]", "give edges together with strategy: edges"),
    (lambda d: d["features"].append({"column": "views", "encode": "bins",
                                     "strategy": "edges", "edges": [3, 1]}),
     "features[9]", "must increase strictly"),
    (lambda d: d["features"].append({"column": "likes", "impute": "constant"}),
     "features[9]", "impute: constant needs a fill_value"),
    (lambda d: d["features"].append({"column": "likes", "scale": "log"}),
     "features[9]", "unknown scaler 'log'"),
    (lambda d: d["features"].append({"column": "likes", "encode": "cross"}),
     "features[9]", "cross combines a list of `columns`"),
    (lambda d: d["features"].append({"columns": ["likes"], "encode": "cross"}),
     "features[9]", "a cross needs at least two columns"),
    (lambda d: d["features"].append({"columns": ["likes", "views"]}),
     "features[9]", "a numeric feature reads one `column`"),
    (lambda d: d["features"].append({"column": "created_at", "encode": "periodic",
                                     "period": "24 hours"}),
     "features[9]", "'24 hours' is not a number or a duration like 24h"),
    (lambda d: d["features"].append({"column": "text", "encode": "tfidff"}),
     "features[9]", "unknown encoder 'tfidff' (did you mean 'tfidf'?)"),
    (lambda d: d["features"].append({"columns": ["likes", "is_spam"],
                                     "encode": "cross"}), "(top level)",
     "target 'is_spam' cannot be a feature"),
    (lambda d: d.update(feature_policy={"drop_missing_above": 1.5}),
     "feature_policy.drop_missing_above", "less than or equal to 1"),
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


def test_every_feature_of_the_chapter_parses():
    doc = _doc()
    doc["features"] += [
        {"column": "likes", "impute": "constant", "fill_value": 0, "scale": "log1p"},
        {"column": "views", "encode": "bins", "strategy": "quantile", "bins": 10,
         "output": "onehot"},
        {"column": "author_country", "encode": "ordinal", "order": ["fr", "us"]},
        {"column": "author_id", "encode": "target", "folds": 5},
        {"column": "author_id", "encode": "frequency"},
        {"columns": ["author_country", "author_id"], "encode": "cross",
         "buckets": 4096},
        {"columns": ["likes", "views"], "encode": "fourier", "dim": 64,
         "gamma": 0.5},
        {"column": "created_at", "encode": "periodic", "period": "24h",
         "harmonics": 2},
        {"column": "text", "encode": "tfidf", "max_features": 20000, "min_df": 5},
    ]
    spec = parse_spec(doc)
    kinds = [f.kind for f in spec.features][-9:]
    assert kinds == ["numeric", "bins", "ordinal", "target", "frequency", "cross",
                     "fourier", "periodic", "tfidf"]
    assert spec.features[-4].inputs == ["author_country", "author_id"]
    assert spec.features[-4].label == "author_country*author_id"
    assert spec.features[-1].settings() == {"max_features": 20000, "min_df": 5}
