"""The Kubernetes manifests of ``deploy/``, loaded once, and the questions tests ask of them.

Manifests are plain dicts as ``yaml.safe_load`` gives them. The helpers follow the paths
Kubernetes itself follows: a workload's pod template (Deployment or CronJob), its one
container, a named port resolved to its number, a volume mount traced back to the claim
or ConfigMap it comes from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZATION = DEPLOY / "kustomization.yaml"
#: The oldest Kubernetes the manifests are validated against (docs/deploy.md says so).
MIN_KUBERNETES = "1.29"

RUNTIME = "driftgate-runtime"
GATEWAY = "driftgate-gateway"
JOBS = "driftgate-jobs"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Document:
    """One object of one file of ``deploy/``."""

    path: Path
    body: Manifest

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.name}: {self.kind}/{self.name}"


def manifest_files() -> list[Path]:
    """Every YAML file of ``deploy/`` but the kustomization."""
    return sorted(p for p in DEPLOY.glob("*.y*ml") if p != KUSTOMIZATION)


def load_documents(paths: list[Path] | None = None) -> list[Document]:
    return [
        Document(path, body)
        for path in (manifest_files() if paths is None else paths)
        for body in yaml.safe_load_all(path.read_text())
        if body
    ]


def find(kind: str, name: str, documents: list[Document] | None = None) -> Manifest:
    found = [d.body for d in documents or load_documents() if d.kind == kind and d.name == name]
    assert len(found) == 1, f"expected one {kind}/{name} in deploy/, found {len(found)}"
    return found[0]


def workloads(documents: list[Document] | None = None) -> list[Document]:
    """The objects that run pods: Deployments and CronJobs."""
    return [d for d in documents or load_documents() if d.kind in ("Deployment", "CronJob")]


def pod_template(workload: Mapping[str, Any]) -> Manifest:
    if workload["kind"] == "CronJob":
        template: Manifest = workload["spec"]["jobTemplate"]["spec"]["template"]
        return template
    template = workload["spec"]["template"]
    return template


def pod_spec(workload: Mapping[str, Any]) -> Manifest:
    spec: Manifest = pod_template(workload)["spec"]
    return spec


def pod_labels(workload: Mapping[str, Any]) -> dict[str, str]:
    return dict(pod_template(workload)["metadata"].get("labels") or {})


def the_container(workload: Mapping[str, Any]) -> Manifest:
    """The workload's only container (every driftgate pod runs one process)."""
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
    container: Manifest = containers[0]
    return container


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's or Service's ``port``/``targetPort`` as a number, named ports resolved."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"container {container['name']} has no port named {port!r}"
    return int(named[0])


def volume_source(workload: Mapping[str, Any], mount_path: str) -> Manifest:
    """The pod volume mounted at ``mount_path`` in the workload's container."""
    mounts = [
        m for m in the_container(workload).get("volumeMounts", []) if m["mountPath"] == mount_path
    ]
    assert mounts, f"{workload['metadata']['name']} mounts nothing at {mount_path}"
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    volume: Manifest = volumes[mounts[0]["name"]]
    return volume


def mounts_of_claim(workload: Mapping[str, Any], claim: str) -> list[Manifest]:
    """The container's mounts of the PersistentVolumeClaim ``claim``."""
    volumes = {
        v["name"]
        for v in pod_spec(workload).get("volumes", [])
        if v.get("persistentVolumeClaim", {}).get("claimName") == claim
    }
    return [m for m in the_container(workload).get("volumeMounts", []) if m["name"] in volumes]


def mounted_config_file(workload: Mapping[str, Any], path: str) -> tuple[str, str]:
    """(ConfigMap name, key) of the file the container sees at ``path``."""
    folder, _, key = path.rpartition("/")
    volume = volume_source(workload, folder)
    assert "configMap" in volume, f"{folder} is not a ConfigMap volume"
    return volume["configMap"]["name"], key


def env_from_secrets(container: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Environment variables taken from Secrets: name -> (secret, key)."""
    return {
        var["name"]: (
            var["valueFrom"]["secretKeyRef"]["name"],
            var["valueFrom"]["secretKeyRef"]["key"],
        )
        for var in container.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    }


def gateway_yaml_text(documents: list[Document] | None = None) -> str:
    """``gateway.yaml`` as the gateway's ConfigMap holds it."""
    workload = find("Deployment", GATEWAY, documents)
    config_map, key = mounted_config_file(
        workload, option(the_container(workload)["args"], "--config")
    )
    text: str = find("ConfigMap", config_map, documents)["data"][key]
    return text


def gateway_yaml(documents: list[Document] | None = None) -> Manifest:
    raw: Manifest = yaml.safe_load(gateway_yaml_text(documents))
    return raw


def option(args: list[str], flag: str) -> str:
    """The value of ``flag`` in a container's argument list."""
    assert flag in args, f"{flag} not in {args}"
    return args[args.index(flag) + 1]


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|m|k|M|G|T)?$")
_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``500m``, ``2Gi``, ``"2"``) as a number."""
    match = _QUANTITY.match(str(value))
    assert match, f"not a quantity this helper reads: {value!r}"
    return float(match[1]) * _FACTORS[match[2]]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a nested manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)
