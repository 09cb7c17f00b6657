"""Each container's arguments, run through driftgate's own command line: the role starts,
listens where its ports, Service and probes say, and serves the paths its probes and the
scraper ask for. Servers are not started: ``uvicorn.run`` is replaced by a recorder, and the
apps are driven in-process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar.testing import TestClient

import gateway.app
import runtime.heap
from driftgate.cli import build_parser, main
from driftgate.jobs import build_jobs
from runtime.app import create_app
from runtime.settings import RuntimeSettings
from tests.deploy.manifests import (
    GATEWAY,
    JOBS,
    RUNTIME,
    Document,
    container_port,
    env_from_secrets,
    find,
    gateway_yaml,
    gateway_yaml_text,
    load_documents,
    mounts_of_claim,
    option,
    the_container,
    workloads,
)
from tests.gateway.fakes import FakeRuntime, gateway_settings, run_gateway

DOCUMENTS = load_documents()
ROLES = {RUNTIME: "runtime", GATEWAY: "gateway", JOBS: "jobs"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
#: Long enough for every HS* algorithm (64 bytes).
SECRET = "k8s-test-secret-" + "x" * 48


def container_of(name: str) -> dict[str, Any]:
    kind = "CronJob" if name == JOBS else "Deployment"
    return the_container(find(kind, name, DOCUMENTS))


def probe_paths(container: dict[str, Any]) -> list[str]:
    return [container[probe]["httpGet"]["path"] for probe in PROBES if probe in container]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the CLI passed to ``uvicorn.run``: the role started, nothing listens."""
    options: dict[str, Any] = {}

    def record(app: object, **kwargs: Any) -> None:
        options.update(kwargs, app=app)

    monkeypatch.setattr(uvicorn, "run", record)
    monkeypatch.setattr(runtime.heap, "enable", lambda: None)
    monkeypatch.setattr(gateway.app, "freeze_heap", lambda: None)
    return options


@pytest.mark.parametrize("workload", workloads(DOCUMENTS), ids=str)
def test_every_containers_arguments_parse_with_the_cli(workload: Document) -> None:
    args = the_container(workload.body)["args"]
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"driftgate refuses the arguments of {workload}: {args}")
    assert parsed.command == ROLES[workload.name]


def test_the_cli_check_catches_a_flag_driftgate_does_not_have() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*container_of(GATEWAY)["args"], "--host", "0.0.0.0"])


def test_the_runtime_listens_where_its_service_and_probes_point(
    served: dict[str, Any], tmp_path: Path
) -> None:
    workload = find("Deployment", RUNTIME, DOCUMENTS)
    container = the_container(workload)
    repository = option(container["args"], "--repository")
    args = [str(tmp_path) if arg == repository else arg for arg in container["args"]]

    assert main(args) == 0

    port = served["port"]
    assert served["host"] == "0.0.0.0"
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert [container_port(container, container[p]["httpGet"]["port"]) for p in PROBES] == [
        port
    ] * len(PROBES)
    service = find("Service", RUNTIME, DOCUMENTS)["spec"]["ports"]
    assert [(p["port"], container_port(container, p["targetPort"])) for p in service] == [
        (port, port)
    ]
    assert [m["mountPath"] for m in mounts_of_claim(workload, "driftgate-models")] == [repository]


def test_the_gateway_listens_where_its_service_and_probes_point(
    served: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = container_of(GATEWAY)
    config = option(container["args"], "--config")
    local_config = tmp_path / Path(config).name
    local_config.write_text(gateway_yaml_text(DOCUMENTS))
    for name in env_from_secrets(container):
        monkeypatch.setenv(name, SECRET)
    args = [str(local_config) if arg == config else arg for arg in container["args"]]

    assert main(args) == 0, "the gateway refused its ConfigMap's gateway.yaml (see stderr)"

    port = served["port"]
    assert served["host"] == "0.0.0.0"
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert [container_port(container, container[p]["httpGet"]["port"]) for p in PROBES] == [
        port
    ] * len(PROBES)
    service = find("Service", GATEWAY, DOCUMENTS)["spec"]["ports"]
    assert [container_port(container, p["targetPort"]) for p in service] == [port]


def test_the_jobs_run_drift_and_explain_once_against_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = container_of(JOBS)
    config = option(container["args"], "--config")
    local_config = tmp_path / Path(config).name
    local_config.write_text(gateway_yaml_text(DOCUMENTS))
    for name in env_from_secrets(container):
        monkeypatch.setenv(name, SECRET)
    args = build_parser().parse_args(
        [str(local_config) if arg == config else arg for arg in container["args"]]
    )

    process = build_jobs(
        args.config, log_upkeep=args.log_upkeep, replicas=args.replica, only=args.job
    )

    assert args.once is True
    # Compaction and retention are the gateway's: it schedules them whenever it logs.
    assert args.log_upkeep is False
    assert process.names == ["drift", "explain"]
    drift, explain = (job.run.__self__ for job in process.scheduler.jobs)  # type: ignore[attr-defined]
    raw = gateway_yaml(DOCUMENTS)
    assert drift.store == explain.store == Path(raw["log"]["store"])
    assert drift.references.repo == explain.references.repo == Path(raw["drift"]["models"])
    # No --replica: the explain job asks the headless Service's name for one runtime pod.
    runtime_port = int(option(container_of(RUNTIME)["args"], "--port"))
    assert explain.replicas == (f"http://{RUNTIME}:{runtime_port}",)


def test_the_runtime_app_serves_its_probe_and_metrics_paths(tmp_path: Path) -> None:
    workload = find("Deployment", RUNTIME, DOCUMENTS)
    container = the_container(workload)
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    paths = [*probe_paths(container), annotations["prometheus.io/path"]]
    settings = RuntimeSettings(repository=tmp_path, poll_interval_s=0)

    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 10
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the runtime never became ready"
            time.sleep(0.05)
        answers = {path: client.get(path).status_code for path in paths}
        assert client.get("/healthz").status_code == 404  # a path it does not serve

    assert answers == dict.fromkeys(paths, 200)


def test_the_gateway_app_serves_its_probe_and_metrics_paths() -> None:
    workload = find("Deployment", GATEWAY, DOCUMENTS)
    container = the_container(workload)
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    paths = [*probe_paths(container), annotations["prometheus.io/path"]]
    replicas = FakeRuntime()

    with run_gateway(gateway_settings(replicas=replicas.replicas), replicas) as running:
        answers = {path: running.client.get(path).status_code for path in paths}
        assert running.client.get("/healthz").status_code == 404

    assert answers == dict.fromkeys(paths, 200)
