"""The gateway.yaml of the ConfigMap: it loads as the pods will load it, and every name,
port and path in it points at something the other manifests provide."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.settings import DnsDiscovery, GatewaySettings, SettingsError
from tests.deploy.manifests import (
    GATEWAY,
    JOBS,
    RUNTIME,
    env_from_secrets,
    find,
    gateway_yaml,
    load_documents,
    mounted_config_file,
    mounts_of_claim,
    option,
    pod_labels,
    pod_spec,
    quantity,
    selects,
    the_container,
    workloads,
)

DOCUMENTS = load_documents()
RAW = gateway_yaml(DOCUMENTS)
SECRET = "k8s-test-secret-" + "x" * 48
#: Seconds a DNS answer may be cached: CoreDNS's `kubernetes` plugin answers with TTL 5.
DNS_TTL_S = 5


def config_folder() -> Path:
    return Path(
        option(the_container(find("Deployment", GATEWAY, DOCUMENTS))["args"], "--config")
    ).parent


def load(environ: dict[str, str]) -> GatewaySettings:
    return GatewaySettings.from_dict(RAW, base_dir=config_folder(), environ=environ)


def runtime_port() -> int:
    return int(option(the_container(find("Deployment", RUNTIME, DOCUMENTS))["args"], "--port"))


def test_gateway_yaml_loads_with_the_secret_the_pods_get() -> None:
    container = the_container(find("Deployment", GATEWAY, DOCUMENTS))
    environ = dict.fromkeys(env_from_secrets(container), SECRET)

    settings = load(environ)

    assert settings.auth.enabled is True
    assert settings.auth.secret == SECRET.encode()
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert settings.discovery == DnsDiscovery(RUNTIME, runtime_port(), 5.0)
    assert settings.log is not None
    assert settings.log.store == Path("/var/lib/driftgate/store")
    assert settings.routes_dir == Path("/var/lib/driftgate/routes")


def test_without_its_secret_the_gateway_refuses_to_start() -> None:
    with pytest.raises(SettingsError, match=RAW["auth"]["secret_env"]):
        load({})


def test_every_container_that_reads_gateway_yaml_gets_the_secret_from_the_secret() -> None:
    readers = []
    for workload in workloads(DOCUMENTS):
        container = the_container(workload.body)
        if "--config" not in container["args"]:
            continue
        readers.append(workload.name)
        config = option(container["args"], "--config")
        assert mounted_config_file(workload.body, config) == (GATEWAY, "gateway.yaml")
        assert env_from_secrets(container) == {
            RAW["auth"]["secret_env"]: ("driftgate-jwt", "secret")
        }

    assert sorted(readers) == [GATEWAY, JOBS]


def test_the_gateway_discovers_the_runtime_pods_through_the_headless_service() -> None:
    discovery = RAW["replicas"]
    service = find("Service", discovery["dns"], DOCUMENTS)

    assert service["spec"]["clusterIP"] == "None"
    selected = [
        w.name
        for w in workloads(DOCUMENTS)
        if selects(service["spec"]["selector"], pod_labels(w.body))
    ]
    assert selected == [RUNTIME]
    assert discovery["port"] == runtime_port()
    assert [p["port"] for p in service["spec"]["ports"]] == [runtime_port()]


def test_a_stopping_runtime_pod_outlives_the_gateways_next_lookup() -> None:
    runtime = find("Deployment", RUNTIME, DOCUMENTS)
    command = the_container(runtime)["lifecycle"]["preStop"]["exec"]["command"]

    assert command[0] == "sleep"
    assert int(command[1]) > RAW["replicas"]["interval_s"] + DNS_TTL_S
    assert pod_spec(runtime)["terminationGracePeriodSeconds"] > int(command[1])


def test_the_store_and_routes_live_on_the_shared_volume_at_one_path() -> None:
    store, routes = Path(RAW["log"]["store"]), Path(RAW["routes_dir"])
    paths = {}
    for name, kind in ((GATEWAY, "Deployment"), (JOBS, "CronJob")):
        mounts = mounts_of_claim(find(kind, name, DOCUMENTS), "driftgate-store")
        assert len(mounts) == 1 and not mounts[0].get("readOnly"), name
        paths[name] = Path(mounts[0]["mountPath"])

    # The catalog's views hold absolute paths: every reader must see the store at one path.
    assert paths[GATEWAY] == paths[JOBS]
    assert store.is_relative_to(paths[GATEWAY])
    assert routes.is_relative_to(paths[GATEWAY])


def test_the_jobs_find_the_models_where_the_runtime_serves_them() -> None:
    repository = option(
        the_container(find("Deployment", RUNTIME, DOCUMENTS))["args"], "--repository"
    )
    jobs = find("CronJob", JOBS, DOCUMENTS)
    mounts = mounts_of_claim(jobs, "driftgate-models")

    assert RAW["drift"]["models"] == RAW["explain"]["models"] == repository
    # Writable: the drift job saves reference profiles beside the model versions.
    assert [(m["mountPath"], m.get("readOnly", False)) for m in mounts] == [(repository, False)]


def test_drift_alerts_link_to_the_gateway_service() -> None:
    link = urlsplit(RAW["drift"]["external_url"])
    ports = [p["port"] for p in find("Service", GATEWAY, DOCUMENTS)["spec"]["ports"]]

    assert (link.hostname, [link.port]) == (GATEWAY, ports)


def test_the_log_leaves_room_on_its_volume() -> None:
    claim = find("PersistentVolumeClaim", "driftgate-store", DOCUMENTS)
    size = quantity(claim["spec"]["resources"]["requests"]["storage"])

    # Compaction writes a merged copy before it removes the pieces; reports need room too.
    assert RAW["log"]["max_bytes"] <= 0.8 * size
