"""The ``explain:`` section of gateway.yaml: defaults, overrides, and errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from explain.settings import ExplainJobSettings, parse_explain_section


def test_no_section_gives_the_documented_defaults() -> None:
    settings = parse_explain_section(None)
    assert settings == ExplainJobSettings()
    assert settings.enabled is True
    assert (settings.interval_s, settings.lookback_s, settings.time_limit_s) == (300, 86400, 30)
    assert (settings.window.rows, settings.window.last_s) == (2000, None)
    assert (settings.rows, settings.min_rows) == (200, 50)
    assert settings.methods == ["permutation", "kernel_shap"]
    assert (settings.background_rows, settings.n_samples, settings.repeats) == (30, 256, 5)
    assert (settings.output, settings.index, settings.keep_reports) == (None, None, 100)


def test_the_module_docstring_example_parses_to_the_defaults() -> None:
    import explain.settings

    doc = explain.settings.__doc__ or ""
    example = doc.split("```yaml\n")[1].split("```")[0]
    assert parse_explain_section(yaml.safe_load(example)["explain"]) == ExplainJobSettings()


def test_a_section_overrides_what_it_names() -> None:
    settings = parse_explain_section(
        {
            "interval_s": 60,
            "window": {"last_s": 3600},
            "methods": ["kernel_shap"],
            "output": "probabilities",
            "index": 2,
            "enabled": False,
        }
    )
    assert settings.interval_s == 60
    assert (settings.window.rows, settings.window.last_s) == (None, 3600)
    assert settings.methods == ["kernel_shap"]
    assert (settings.output, settings.index, settings.enabled) == ("probabilities", 2, False)
    assert settings.rows == 200  # untouched keys keep their defaults


def test_the_repository_resolves_against_the_config_folder(tmp_path: Path) -> None:
    settings = parse_explain_section({"models": "repo"})
    assert settings.repository(tmp_path) == (tmp_path / "repo").resolve()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rowz": 3}, "rowz"),
        ({"rows": 1}, "explain.rows must be at least 2"),
        ({"time_limit_s": 0}, "explain.time_limit_s: expected a positive finite number"),
        ({"time_limit_s": float("inf")}, "explain.time_limit_s: expected a positive finite"),
        ({"interval_s": float("inf")}, "explain.interval_s: expected a positive finite"),
        ({"lookback_s": float("nan")}, "explain.lookback_s: expected a positive finite"),
        ({"window": {"last_s": float("nan")}}, "window.last_s: expected a positive finite"),
        ({"index": -5}, r"explain.index: expected a whole number >= 0, got -5"),
        ({"repeats": 0}, r"explain.repeats: expected a whole number >= 1, got 0"),
        ({"methods": ["lime"]}, "explain.methods"),
        ({"methods": []}, "explain.methods"),
        ({"methods": ["permutation", "permutation"]}, "twice"),
        ({"window": {"rows": 10, "last_s": 60}}, "exactly one of rows or last_s"),
        ({"n_samples": "many"}, "n_samples"),
        ({"run_timeout_s": float("nan")}, "explain.run_timeout_s: expected a positive finite"),
        # Stopped before its own budget ran out, every run would fail.
        (
            {"run_timeout_s": 20},
            r"explain.run_timeout_s: expected more than time_limit_s \(30\), got 20",
        ),
        # Loaded, then every version was skipped on every run for a too-small window.
        (
            {"window": {"rows": 40}},
            r"explain.min_rows: expected at most window.rows \(40\), got 50",
        ),
    ],
)
def test_a_wrong_value_is_an_error_naming_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_explain_section(raw)
    assert str(caught.value).startswith("explain")


def test_a_section_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ValueError, match="explain: expected a mapping"):
        parse_explain_section(["rows", 3])


def test_the_configuration_in_docs_explain_md_is_the_defaults() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "explain.md"
    section = doc.read_text().split("## The explain job", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert parse_explain_section(yaml.safe_load(example)["explain"]) == ExplainJobSettings()


def test_the_jobs_process_schedules_explain_when_it_has_a_runtime(tmp_path: Path) -> None:
    from driftgate.jobs import JobsConfigError, build_jobs

    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlog: {store: store}\n")
    assert "explain" not in build_jobs(config).names  # no replica to ask
    assert "explain" in build_jobs(config, replicas=["http://127.0.0.1:8001"]).names
    config.write_text(
        "auth: {enabled: false}\nlog: {store: store}\nreplicas: [http://127.0.0.1:8001]\n"
    )
    assert build_jobs(config).names == ["drift", "explain"]
    config.write_text(  # replicas found by DNS: the explain job asks the name itself
        "auth: {enabled: false}\nlog: {store: store}\n"
        "replicas: {dns: driftgate-runtime, port: 8001}\n"
    )
    assert build_jobs(config).names == ["drift", "explain"]
    config.write_text(
        "auth: {enabled: false}\nlog: {store: store}\nreplicas: [http://127.0.0.1:8001]\n"
        "explain: {enabled: false}\n"
    )
    assert build_jobs(config).names == ["drift"]
    config.write_text("auth: {enabled: false}\nlog: {store: store}\nexplain: {rows: 1}\n")
    with pytest.raises(JobsConfigError, match=r"explain\.rows"):
        build_jobs(config)


def test_driftgate_jobs_takes_replicas_on_the_command_line() -> None:
    from driftgate.cli import build_parser

    args = build_parser().parse_args(
        ["jobs", "--replica", "http://127.0.0.1:8001", "--replica", "http://127.0.0.1:8002"]
    )
    assert args.replica == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]
    assert build_parser().parse_args(["jobs"]).replica is None


def test_a_runs_time_limit_is_an_hour_the_interval_or_twice_the_budget_unless_set() -> None:
    """A run without one hung for as long as a runtime took to answer (monitoring.jobs);
    ``time_limit_s`` is a budget the run may overrun, not a limit that stops it."""
    assert ExplainJobSettings().run_limit_s() == 3600
    assert parse_explain_section({"interval_s": 7200}).run_limit_s() == 7200
    assert parse_explain_section({"time_limit_s": 2400}).run_limit_s() == 4800
    assert parse_explain_section({"run_timeout_s": 600}).run_limit_s() == 600


def test_the_jobs_process_gives_each_job_its_configured_time_limit(tmp_path: Path) -> None:
    from driftgate.jobs import build_jobs

    config = tmp_path / "gateway.yaml"
    config.write_text(
        "auth: {enabled: false}\nlog: {store: store}\nreplicas: [http://127.0.0.1:8001]\n"
        "drift: {run_timeout_s: 1234}\nexplain: {run_timeout_s: 4321}\n"
    )
    limits = {job.name: job.timeout_s for job in build_jobs(config).scheduler.jobs}
    assert limits == {"drift": 1234, "explain": 4321}
