"""Dataset spec validation: every bad field gives an error that names it."""
import pytest

from htgnn_tf.data.spec import SpecError, load_spec, parse_spec

BASE = {
    "events": {"files": ["e.csv"]}, "date": "date", "date_format": "%Y-%m-%d",
    "metrics": ["value"], "value_metric": "value", "snapshot_date": "2024-01-31",
}


@pytest.mark.parametrize("change, message", [
    ({"value_metric": "revenue"}, "'value_metric' is 'revenue', which is not in 'metrics'"),
    ({"horizons": [180, 30]}, "'horizons' must be strictly increasing"),
    ({"observation_days": 30, "horizons": [30]}, "'observation_days' (30) must be shorter"),
    ({"snapshot_date": "31/01/2024"}, "'snapshot_date' must be YYYY-MM-DD"),
    ({"train_fraction": 1.5}, "'train_fraction' must be in (0, 1)"),
    ({"knn_k": 0}, "'knn_k' must be a positive integer"),
    ({"cohort_size": 4, "knn_k": 8}, "'cohort_size' (4) must exceed 'knn_k' (8)"),
    ({"events": {"files": ["e.txt"], "format": "xml"}}, "'events.format' is 'xml'"),
    ({"events": {"files": ["e.txt"], "format": "whitespace"}}, "'events.columns' is required"),
    ({"derived_categoricals": ["first_day_band:clicks"]}, "'derived_categoricals' has"),
    ({"derived_categoricals": []}, "'derived_categoricals' is empty"),
    ({"colour": "red"}, "unknown spec fields ['colour']"),
    ({"metrics": []}, "'metrics' must name at least one"),
])
def test_bad_field_is_named(change, message):
    with pytest.raises(SpecError) as e:
        parse_spec({**BASE, **change})
    assert message in str(e.value)


def test_missing_required_field_is_named():
    raw = dict(BASE)
    del raw["date_format"]
    with pytest.raises(SpecError, match="missing required field 'date_format'"):
        parse_spec(raw)


def test_cdnow_spec_layout():
    spec = load_spec("cdnow")
    assert spec.metrics == ("number_of_cds", "dollar_value")
    assert spec.categorical_features == (
        "acquisition_month", "acquisition_weekday", "first_day_band:number_of_cds")
    assert spec.statistical_features == ("day0_number_of_cds", "day0_dollar_value")
    assert spec.horizons == (30, 180, 365) and spec.train_fraction == 0.9


def test_unknown_spec_name_lists_builtins():
    with pytest.raises(SpecError, match=r"built-in specs \['cdnow'\]"):
        load_spec("no-such-spec")
