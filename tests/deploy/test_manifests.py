"""deploy/ as Kubernetes sees it: valid objects, a complete kustomization, and names,
labels, volumes and images that agree from one file to the next."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.manifests import (
    DEPLOY,
    GATEWAY,
    KUSTOMIZATION,
    MIN_KUBERNETES,
    RUNTIME,
    Document,
    find,
    gateway_yaml,
    load_documents,
    manifest_files,
    mounts_of_claim,
    pod_labels,
    pod_spec,
    quantity,
    selects,
    the_container,
    walk,
    workloads,
)

DOCUMENTS = load_documents()
VERSIONS = (MIN_KUBERNETES, kubernetes_validate.latest_version())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("document", DOCUMENTS, ids=str)
def test_every_object_is_valid_kubernetes(document: Document, version: str) -> None:
    # Strict: a field Kubernetes does not know (a typo) fails, as `kubectl apply` would.
    kubernetes_validate.validate(document.body, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    deployment = copy.deepcopy(find("Deployment", RUNTIME, DOCUMENTS))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, MIN_KUBERNETES, strict=True)


def test_the_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    listed = kustomization["resources"]

    assert kustomization["kind"] == "Kustomization"
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert sorted(listed) == [path.name for path in manifest_files()]


def test_the_base_is_namespace_neutral() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())

    assert "namespace" not in kustomization
    assert [str(d) for d in DOCUMENTS if "namespace" in d.body["metadata"]] == []


def test_names_are_unique_per_kind() -> None:
    keys = [(d.kind, d.name) for d in DOCUMENTS]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    "workload", [w for w in workloads(DOCUMENTS) if w.kind == "Deployment"], ids=str
)
def test_a_deployment_selects_its_own_pods(workload: Document) -> None:
    selector = workload.body["spec"]["selector"]["matchLabels"]
    assert selects(selector, pod_labels(workload.body))


def _pods_selected(selector: dict[str, str]) -> list[str]:
    return [w.name for w in workloads(DOCUMENTS) if selects(selector, pod_labels(w.body))]


def test_each_service_selects_the_pods_of_exactly_one_workload() -> None:
    services = {d.name: d.body for d in DOCUMENTS if d.kind == "Service"}

    assert {name: _pods_selected(s["spec"]["selector"]) for name, s in services.items()} == {
        RUNTIME: [RUNTIME],
        GATEWAY: [GATEWAY],
    }


def test_each_disruption_budget_covers_the_pods_of_its_own_workload() -> None:
    for name in (RUNTIME, GATEWAY):
        budget = find("PodDisruptionBudget", name, DOCUMENTS)
        assert _pods_selected(budget["spec"]["selector"]["matchLabels"]) == [name]
    gateways = find("Deployment", GATEWAY, DOCUMENTS)["spec"]["replicas"]
    assert find("PodDisruptionBudget", GATEWAY, DOCUMENTS)["spec"]["minAvailable"] < gateways


def test_the_autoscaler_scales_the_runtime_deployment() -> None:
    hpa = find("HorizontalPodAutoscaler", RUNTIME, DOCUMENTS)
    target = hpa["spec"]["scaleTargetRef"]

    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        RUNTIME,
    )
    assert 1 < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # The HPA owns the count: a replica count in the Deployment would reset it on apply.
    assert "replicas" not in find("Deployment", RUNTIME, DOCUMENTS)["spec"]


def test_several_gateways_share_one_state_volume_and_a_rollout_never_stops_them_all() -> None:
    # docs/deploy.md, "Several gateways": routes, canary lease and log store are shared.
    gateway = find("Deployment", GATEWAY, DOCUMENTS)
    assert gateway["spec"]["replicas"] >= 2
    assert gateway["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    raw = gateway_yaml(DOCUMENTS)
    state = mounts_of_claim(gateway, "driftgate-store")
    assert [m["mountPath"] for m in state] == ["/var/lib/driftgate"]
    for shared in (raw["routes_dir"], raw["log"]["store"]):
        assert shared.startswith("/var/lib/driftgate/"), shared


@pytest.mark.parametrize("workload", workloads(DOCUMENTS), ids=str)
def test_every_pod_runs_the_one_image_through_its_entrypoint(workload: Document) -> None:
    container = the_container(workload.body)
    images = {the_container(w.body)["image"] for w in workloads(DOCUMENTS)}

    assert images == {"driftgate"}
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in container, "`command` would replace the image's driftgate entrypoint"


@pytest.mark.parametrize("workload", workloads(DOCUMENTS), ids=str)
def test_every_volume_is_defined_and_every_claim_exists(workload: Document) -> None:
    spec = pod_spec(workload.body)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claims = {d.name for d in DOCUMENTS if d.kind == "PersistentVolumeClaim"}
    config_maps = {d.name for d in DOCUMENTS if d.kind == "ConfigMap"}

    for mount in the_container(workload.body).get("volumeMounts", []):
        assert mount["name"] in volumes, f"{mount['name']} is mounted but not defined"
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
        if "configMap" in volume:
            assert volume["configMap"]["name"] in config_maps


def test_shared_volumes_can_be_mounted_on_several_nodes() -> None:
    for claim in (d for d in DOCUMENTS if d.kind == "PersistentVolumeClaim"):
        users = [w.name for w in workloads(DOCUMENTS) if mounts_of_claim(w.body, claim.name)]
        assert len(users) >= 2, f"{claim.name} is used by {users} only"
        assert claim.body["spec"]["accessModes"] == ["ReadWriteMany"], claim.name


def test_the_runtime_cannot_write_to_the_model_repository() -> None:
    runtime = find("Deployment", RUNTIME, DOCUMENTS)
    mounts = mounts_of_claim(runtime, "driftgate-models")

    assert [m["readOnly"] for m in mounts] == [True]
    volume = next(v for v in pod_spec(runtime)["volumes"] if v["name"] == mounts[0]["name"])
    assert volume["persistentVolumeClaim"]["readOnly"] is True


@pytest.mark.parametrize("workload", workloads(DOCUMENTS), ids=str)
def test_every_container_has_requests_within_its_limits(workload: Document) -> None:
    resources = the_container(workload.body)["resources"]
    for resource in ("cpu", "memory"):
        request = quantity(resources["requests"][resource])
        limit = quantity(resources["limits"][resource])
        assert 0 < request <= limit, f"{workload}: {resource} {request} > {limit}"


@pytest.mark.parametrize("workload", workloads(DOCUMENTS), ids=str)
def test_every_pod_runs_unprivileged(workload: Document) -> None:
    pod = pod_spec(workload.body)["securityContext"]
    container = the_container(workload.body)["securityContext"]

    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert pod_spec(workload.body)["automountServiceAccountToken"] is False


def test_nothing_is_left_to_fill_in() -> None:
    # An overlay changes names and sizes; the base must apply as it is.
    placeholders = [
        (str(d), key, value)
        for d in DOCUMENTS
        for key, value in walk(d.body)
        if isinstance(value, str) and any(m in value for m in ("TODO", "CHANGEME", "<", "${"))
    ]
    assert placeholders == []


def _prometheus_annotations(workload: Any) -> dict[str, str]:
    annotations = workload["spec"]["template"]["metadata"].get("annotations") or {}
    return {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")}


def test_the_servers_ask_to_be_scraped_on_their_own_port() -> None:
    for name in (RUNTIME, GATEWAY):
        workload = find("Deployment", name, DOCUMENTS)
        annotations = _prometheus_annotations(workload)
        ports = [p["containerPort"] for p in the_container(workload)["ports"]]

        assert annotations["prometheus.io/scrape"] == "true"
        assert [int(annotations["prometheus.io/port"])] == ports
        assert annotations["prometheus.io/path"] == "/metrics"


def test_deploy_holds_only_yaml_and_no_secret() -> None:
    # The JWT secret is created by hand (docs/deploy.md), never committed.
    assert {p.suffix for p in DEPLOY.iterdir()} == {".yaml"}
    assert [str(d) for d in DOCUMENTS if d.kind == "Secret"] == []
