"""Every transform is a scikit-learn transformer: scikit-learn's own
``check_estimator`` runs on each; the checks a transform cannot pass by design
are listed with the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.utils.estimator_checks import check_estimator

from mlsd.features import (
    BinsFeature,
    CrossFeature,
    FourierFeature,
    FrequencyFeature,
    HashedNgramsFeature,
    HashingFeature,
    NumericFeature,
    OneHotFeature,
    OrdinalFeature,
    PeriodicFeature,
    TargetFeature,
    TfidfFeature,
    TimeFeature,
)

OUT_OF_FOLD = ("fit_transform gives the fitted rows out-of-fold encodings (so the "
               "label cannot leak), transform the full-training ones: they differ "
               "by design, as with scikit-learn's own TargetEncoder")
NO_WORDS = ("learns a vocabulary of words found in at least min_df texts; the "
            "checks' random numbers, read as text, repeat no word")
NO_TIMES = "reads timestamps; the checks pass numbers"

EXPECTED = {
    TargetFeature: dict.fromkeys(["check_transformer_general",
                                  "check_transformer_data_not_an_array"],
                                 OUT_OF_FOLD),
    TfidfFeature: dict.fromkeys([
        "check_dict_unchanged", "check_dont_overwrite_parameters",
        "check_dtype_object", "check_estimators_dtypes",
        "check_estimators_fit_returns_self", "check_estimators_overwrite_params",
        "check_estimators_pickle", "check_f_contiguous_array_estimator",
        "check_fit2d_1feature", "check_fit2d_1sample", "check_fit2d_predict1d",
        "check_fit_check_is_fitted", "check_fit_idempotent", "check_fit_score_takes_y",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_n_features_in", "check_n_features_in_after_fitting",
        "check_pipeline_consistency", "check_readonly_memmap_input",
        "check_transformer_data_not_an_array", "check_transformer_general",
        "check_transformer_preserve_dtypes"], NO_WORDS),
    TimeFeature: dict.fromkeys([
        "check_dict_unchanged", "check_dtype_object", "check_estimators_dtypes",
        "check_estimators_pickle", "check_f_contiguous_array_estimator",
        "check_fit_idempotent", "check_fit_score_takes_y",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_pipeline_consistency", "check_transformer_data_not_an_array",
        "check_transformer_general", "check_transformer_preserve_dtypes"], NO_TIMES),
}
NUMERIC = [NumericFeature, BinsFeature, PeriodicFeature, FourierFeature, CrossFeature]
OTHERS = [OneHotFeature, OrdinalFeature, FrequencyFeature, TargetFeature,
          HashingFeature, HashedNgramsFeature, TfidfFeature, TimeFeature]


# mlsd's transforms share mlsd's Transform base, not scikit-learn's BaseEstimator
@pytest.mark.filterwarnings("ignore:Estimator .* does not inherit")
@pytest.mark.parametrize("cls", NUMERIC + OTHERS, ids=lambda c: c.__name__)
def test_check_estimator(cls):
    expected = EXPECTED.get(cls, {})
    assert cls not in NUMERIC or not expected, "the numeric ones pass every check"
    results = check_estimator(cls(), on_fail=None, on_skip=None,
                              expected_failed_checks=expected)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert not failed, failed
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert xfailed <= set(expected)


def test_in_a_column_transformer_next_to_scikit_learn():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.lognormal(size=200), "c": rng.choice(
        ["a", "b", None], 200), "y": rng.integers(0, 2, 200)})
    ct = ColumnTransformer([("num", NumericFeature(scale="log1p"), ["x"]),
                            ("cat", OneHotFeature(), ["c"]),
                            ("te", TargetFeature(), ["c"])])
    X = ct.fit_transform(frame[["x", "c"]], frame["y"])
    assert X.shape == (200, 1 + 4 + 1)  # x (no missing value); a, b, other, missing
    names = list(ct.get_feature_names_out())
    assert "num__x" in names and "cat__c=a" in names and "te__c.target" in names
