"""The ``drift:`` section of gateway.yaml: every wrong value is refused naming its key, never
read another way (a NaN interval would silently stop the scheduled job)."""

from __future__ import annotations

import pytest

from drift.settings import DriftSettings, parse_drift_section


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"interval_s": float("nan")}, "drift.interval_s: expected a positive finite number"),
        ({"interval_s": float("inf")}, "drift.interval_s: expected a positive finite number"),
        ({"lookback_s": float("nan")}, "drift.lookback_s: expected a positive finite number"),
        ({"window": {"last_s": float("nan")}}, "window.last_s: expected a positive finite"),
        ({"window": {"rows": 0}}, "window.rows: expected a whole number >= 1, got 0"),
        ({"small_sample": -1}, "drift.small_sample: expected a whole number >= 0, got -1"),
        ({"min_labels": -5}, "drift.min_labels: expected a whole number >= 1, got -5"),
        ({"auto_reference_rows": -1}, "drift.auto_reference_rows: expected a whole number >= 0"),
        ({"min_effect": {"foo": 1}}, "drift.min_effect: 'foo' is not one of"),
        ({"min_effect": {"psi": -0.1}}, "drift.min_effect.psi: expected a finite number >= 0"),
        ({"min_effect": {"psi": float("nan")}}, "drift.min_effect.psi: expected a finite"),
        (
            {"statistics": {"categorical": "wasserstein"}},
            "drift.statistics.categorical: wasserstein does not compare categorical features; "
            "use one of chi_square, jensen_shannon, psi",
        ),
        ({"statistics": {"categorical": "ks"}}, "ks does not compare categorical features"),
        ({"webhook": "not a url"}, "drift.webhook: expected an http:// or https:// URL"),
        # Each of these loaded, then every run checked nothing, saying so only at INFO.
        (
            {"window": {"rows": 100}},
            "drift.min_rows: expected at most window.rows (100), got 200: no window would "
            "ever have enough rows",
        ),
        (
            {"min_effect": {"jensen_shannon": 1.0}},
            "drift.min_effect.jensen_shannon: expected a number below 1, got 1.0",
        ),
        ({"min_effect": {"missing_share": 5}}, "drift.min_effect.missing_share: expected a number"),
        # KS's D and chi-square's Cramer's V never exceed 1 either.
        ({"min_effect": {"ks": 1.0}}, "drift.min_effect.ks: expected a number below 1, got 1.0"),
        ({"min_effect": {"chi_square": 2}}, "drift.min_effect.chi_square: expected a number below"),
        ({"external_url": "localhost:8000"}, "drift.external_url: expected an http://"),
        ({"run_timeout_s": 0}, "drift.run_timeout_s: expected a positive finite number"),
        ({"run_timeout_s": float("inf")}, "drift.run_timeout_s: expected a positive finite"),
    ],
)
def test_a_wrong_value_names_its_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_drift_section(raw)

    assert str(refused.value).startswith("drift: ")
    assert message in str(refused.value)


def test_the_documented_values_are_accepted() -> None:
    settings = parse_drift_section(
        {
            "small_sample": 0,
            "auto_reference_rows": 0,
            "min_effect": {"ks": 0.05, "missing_share": 0.02, "psi": 0},
            "webhook": "https://alerts.example/drift",
            "window": {"last_s": 3600},
            "min_rows": 100_000,  # a time window may hold any number of rows
        }
    )

    assert settings.small_sample == settings.auto_reference_rows == 0
    assert parse_drift_section({"window": {"rows": 300}, "min_rows": 300}).min_rows == 300
    assert parse_drift_section({"min_effect": {"psi": 2.5, "wasserstein": 1.5}})
    assert settings.min_effect["missing_share"] == 0.02
    assert parse_drift_section(None) == DriftSettings()


def test_a_runs_time_limit_is_an_hour_or_the_interval_unless_set() -> None:
    """A run without one hung for as long as its DuckDB query did (monitoring.jobs)."""
    assert DriftSettings().run_limit_s() == 3600
    assert parse_drift_section({"interval_s": 7200}).run_limit_s() == 7200
    assert parse_drift_section({"run_timeout_s": 600}).run_limit_s() == 600
