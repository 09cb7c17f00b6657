"""``driftgate``'s command line: a user's mistake is one line naming the flag, file or
variable, with exit status 2; never a traceback, never a value read another way."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import runtime.heap
from driftgate.cli import main
from tests.cli_logging import root_logging  # noqa: F401  (an autouse fixture)
from tests.e2e.processes import free_port


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line argparse prints for a bad flag (exit status 2)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runtime", "--repository", "m", "--port", "70000"], "argument --port: expected a TCP"),
        (["runtime", "--repository", "m", "--port", "-5"], "port 1-65535, got '-5'"),
        (["gateway", "--config", "g.yaml", "--port", "83999"], "port 1-65535, got '83999'"),
        (["up", "--runtime-port", "0"], "argument --runtime-port: expected a TCP port"),
        (["up", "--replicas", "0"], "argument --replicas: expected a whole number >= 1"),
        (["jobs", "--metrics-port", "70000"], "argument --metrics-port: expected a TCP port"),
        (["jobs", "--replica", "notaurl"], "argument --replica: expected an http:// or https://"),
        (["jobs", "--replica", "http://h:99999"], "argument --replica: expected an http://"),
        (
            ["runtime", "--repository", "m", "--poll-interval", "-1"],
            "argument --poll-interval: expected a finite number of seconds >= 0, got '-1'",
        ),
        (["runtime", "--repository", "m", "--poll-interval", "nan"], "seconds >= 0, got 'nan'"),
        (["sql", "select 1", "--max-rows", "-1"], "argument --max-rows: expected a whole"),
        (["sql", "select 1", "--max-rows", "0"], "expected a whole number >= 1, got '0'"),
        (["sql", "select 1", "--timeout", "0"], "argument --timeout: expected a finite number"),
        (["sql", "select 1", "--timeout", "nan"], "seconds > 0, got 'nan'"),
        (["sql", "select 1", "--timeout", "-1"], "seconds > 0, got '-1'"),
        (["demo", "traffic", "--requests", "-1"], "argument --requests: expected a whole number"),
        (["demo", "traffic", "--rows-per-request", "0"], "argument --rows-per-request:"),
        (["demo", "traffic", "--url", "notaurl"], "argument --url: expected an http://"),
        (["--log-level", "BOGUS", "sql", "select 1"], "argument --log-level: expected one of"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in refused(argv, capsys)


def test_a_bad_log_level_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTGATE_LOG_LEVEL", "loud")
    assert "(flag or DRIFTGATE_LOG_LEVEL), got 'loud'" in refused(["sql", "select 1"], capsys)


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """uvicorn.run recorded, not run."""
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(options))
    monkeypatch.setattr(runtime.heap, "enable", lambda: None)
    return served


@pytest.mark.parametrize(
    "case",
    [
        ("DRIFTGATE_INFERENCE_THREADS=abc", "expected a whole number >= 1, got 'abc'"),
        ("DRIFTGATE_INFERENCE_THREADS=0", "expected a whole number >= 1, got '0'"),
        ("DRIFTGATE_MAX_BODY_BYTES=16MB", "expected a whole number >= 1, got '16MB'"),
        ("DRIFTGATE_POLL_INTERVAL_S=x", "expected a number >= 0, got 'x'"),
        ("DRIFTGATE_POLL_INTERVAL_S=nan", "expected a number >= 0, got 'nan'"),
        ("DRIFTGATE_INLINE_INFERENCE_MAX_MS=-1", "expected a number >= 0, got '-1'"),
        ("DRIFTGATE_CLIENT_TIMEOUT_S=0", "expected a positive number of seconds, got 0.0"),
        ("DRIFTGATE_CLIENT_TIMEOUT_S=inf", "expected a number >= 0, got 'inf'"),
    ],
)
def test_a_bad_runtime_variable_is_named(
    case: tuple[str, str],
    tmp_path: Path,
    no_server: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    setting, message = case
    variable, _, value = setting.partition("=")
    monkeypatch.setenv(variable, value)

    assert main(["runtime", "--repository", str(tmp_path)]) == 2

    assert capsys.readouterr().err == f"driftgate: {variable}: {message}\n"
    assert no_server == []


@pytest.mark.parametrize("store", ["file", "file/below"])
def test_the_gateway_refuses_a_store_it_cannot_create(
    store: str, tmp_path: Path, no_server: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a folder")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"auth: {{enabled: false}}\nlog: {{store: {store}}}\n")

    assert main(["gateway", "--config", str(config)]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"driftgate: {config}: log.store: ")
    assert str(tmp_path / store) in err
    assert len(err.splitlines()) == 1
    assert no_server == []


def test_the_gateway_creates_its_store(
    tmp_path: Path, no_server: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlog: {store: var/store}\n")

    assert main(["gateway", "--config", str(config), "--port", "8123"]) == 0

    assert (tmp_path / "var" / "store").is_dir()
    assert no_server[0]["port"] == 8123


@pytest.mark.parametrize("command", ["runtime", "gateway"])
def test_both_servers_cut_off_slow_clients_after_the_configured_time(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append((app, options)))
    monkeypatch.setattr(runtime.heap, "enable", lambda: None)
    monkeypatch.setenv("DRIFTGATE_CLIENT_TIMEOUT_S", "7")
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlisten: {client_timeout_s: 9}\n")
    argv = ["--repository", str(tmp_path)] if command == "runtime" else ["--config", str(config)]

    assert main([command, *argv]) == 0

    [(app, options)] = served
    protocol = options["http"]
    assert protocol.timeout_s == (7 if command == "runtime" else 9)
    protocol.on_timeout("head")  # counted on the app's own /metrics
    state = app.state.runtime if command == "runtime" else app.state
    prefix = "driftgate_runtime" if command == "runtime" else "driftgate"
    counted = state.registry.get_sample_value(f"{prefix}_client_timeouts_total", {"phase": "head"})
    assert counted == 1
    protocol.on_malformed()
    assert state.registry.get_sample_value(f"{prefix}_malformed_requests_total") == 1


def test_sql_refuses_a_folder_that_is_not_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "select count(*) from predictions", "--store", str(tmp_path)]) == 2

    assert capsys.readouterr().err.startswith(
        f"driftgate: --store: no prediction log store at {tmp_path}"
    )
    assert list(tmp_path.iterdir()) == []  # nothing created there


def test_demo_traffic_to_a_gateway_that_is_down_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\n")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    argv = ["demo", "traffic", "--url", url, "--config", str(config), "--requests", "1"]
    assert main(argv) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"driftgate: cannot reach the gateway at {url}: ")
    assert len(err.splitlines()) == 1


def test_demo_traffic_refuses_a_scale_that_is_not_finite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "traffic", "--scale", "fare=nan"]) == 2
    assert "--scale fare=nan: expected FEATURE=NUMBER" in capsys.readouterr().err


def test_demo_files_that_cannot_be_written_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")

    assert main(["demo", "digit", "3", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"driftgate: cannot write {tmp_path}: ")
    assert main(["demo", "digit", "3", str(tmp_path / "file" / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("driftgate: cannot write ")
    assert main(["demo", "build", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"driftgate: {tmp_path / 'file'} is not a folder\n"
    assert main(["demo", "build", str(tmp_path / "file" / "below")]) == 2
    assert capsys.readouterr().err.startswith("driftgate: cannot build the demo repository in ")


@pytest.fixture
def training(tmp_path: Path) -> Path:
    (tmp_path / "models" / "titanic" / "1").mkdir(parents=True)
    data = tmp_path / "train.csv"
    data.write_text("fare,sex,survived\n7.25,male,0\n71.3,female,1\n8.05,male,0\n")
    return data


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--label", "Nope"], "'Nope' is not a column of"),
        (["--feature", "nope"], "'nope' is not a column of"),
    ],
)
def test_reference_build_names_a_column_the_file_lacks(
    extra: list[str], message: str, training: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reference", "build", str(training), "--model", "titanic", "--version", "1"]
    repository = ["--repository", str(training.parent / "models"), "--no-predictions"]
    features = [] if "--feature" in extra else ["--feature", "fare"]

    assert main(argv + repository + features + extra) == 2

    err = capsys.readouterr().err
    assert err.startswith("driftgate: ") and message in err
    assert len(err.splitlines()) == 1


def test_reference_build_names_a_damaged_parquet_file(
    training: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = training.with_suffix(".parquet")
    damaged.write_bytes(b"PAR1" + b"\0" * 40)
    argv = ["reference", "build", str(damaged), "--model", "titanic", "--version", "1"]
    options = ["--repository", str(training.parent / "models"), "--no-predictions"]

    assert main([*argv, *options, "--feature", "fare"]) == 2

    assert capsys.readouterr().err.startswith(f"driftgate: cannot read {damaged}: ")


def test_up_refuses_ports_in_use_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `driftgate up` started its replicas and jobs process, then failed with
    uvicorn's bare "address already in use" for the gateway's port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["up", "--home", str(tmp_path / "home"), "--port", str(port)]
        argv += ["--runtime-port", str(free_port()), "--jobs-metrics-port", str(free_port())]
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"driftgate: port {port} already in use (another `driftgate up`?): stop it, or pick "
        "free ports with --port, --runtime-port and --jobs-metrics-port"
    )
    assert not (tmp_path / "home").exists()  # nothing built, nothing started


def test_up_says_what_replicas_are(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--replicas REPLICAS runtime replicas to start and supervise, on consecutive " in (
        help_text
    )


@pytest.mark.parametrize(
    ("argv", "example"),
    [
        (["routes", "list", "--gateway", "localhost:8000"], "http://127.0.0.1:8000"),
        (["demo", "traffic", "--url", "notaurl"], "http://127.0.0.1:8000"),
        (["jobs", "--replica", "notaurl"], "http://127.0.0.1:8001"),
    ],
)
def test_a_bad_url_is_shown_an_example_of_the_right_server(
    argv: list[str], example: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway's flags gave a runtime replica's port as their example."""
    assert f"URL such as {example}, got" in refused(argv, capsys)


def test_help_shows_no_rst_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ["token", "create", "--sub", "a", "--scope", "predict"],
        ["jobs", "--once"],
        ["jobs"],
        ["demo", "traffic"],
    ],
)
def test_a_command_without_its_configuration_says_where_it_looked_once(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    """Outside the checkout, jobs and demo traffic answered only "var/gateway.yaml: [Errno
    2] No such file or directory" (jobs naming the path twice), without the way out."""
    monkeypatch.chdir(tmp_path)  # where no `driftgate up` ran: no var/gateway.yaml
    assert main(command) == 2
    assert capsys.readouterr().err == (
        "driftgate: no gateway configuration at var/gateway.yaml: name the gateway's with "
        "--config, or run `driftgate up` here first (it writes var/gateway.yaml)\n"
    )
    missing = tmp_path / "elsewhere.yaml"
    assert main([*command, "--config", str(missing)]) == 2
    assert capsys.readouterr().err.startswith(f"driftgate: no gateway configuration at {missing}:")
