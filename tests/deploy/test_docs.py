"""Every example of docs/deploy.md, checked against deploy/ and driftgate itself.

No cluster runs here, so the examples are not executed: each YAML block is validated (and
the objects it names must exist), and each shell command is matched to a check of what
it relies on (a Secret the pods read, a Deployment and the file it mounts, arguments
driftgate's parser accepts). A command or block that no check recognises fails the test:
a new example needs a new check.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from litestar.testing import TestClient

from driftgate.cli import build_parser
from runtime.app import create_app as create_runtime_app
from runtime.demo import DEMO_MODELS
from runtime.settings import RuntimeSettings
from tests.deploy.manifests import (
    DEPLOY,
    GATEWAY,
    JOBS,
    KUSTOMIZATION,
    MIN_KUBERNETES,
    ROOT,
    RUNTIME,
    Manifest,
    env_from_secrets,
    find,
    gateway_yaml,
    load_documents,
    mounted_config_file,
    option,
    pod_spec,
    the_container,
    workloads,
)

DOC = ROOT / "docs" / "deploy.md"
#: A fenced block, with the file name an HTML comment before it gives it, if any.
BLOCK = re.compile(
    r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<language>\w*)\n(?P<code>.*?)```", re.DOTALL
)
DOCUMENTS = load_documents()
WORKLOAD_KINDS = {"deploy": "Deployment", "deployment": "Deployment", "cronjob": "CronJob"}


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    file: str | None


def blocks() -> list[Block]:
    return [Block(m["language"], m["code"], m["file"]) for m in BLOCK.finditer(DOC.read_text())]


YAML_BLOCKS = [b for b in blocks() if b.language == "yaml"]
SHELL_BLOCKS = [b for b in blocks() if b.language == "sh"]
FILES = {b.file: yaml.safe_load(b.code) for b in YAML_BLOCKS if b.file}


def test_every_block_is_yaml_or_shell_and_there_are_some() -> None:
    assert {b.language for b in blocks()} == {"yaml", "sh"}
    assert len(YAML_BLOCKS) >= 4
    assert len(SHELL_BLOCKS) >= 4


# --- YAML -----------------------------------------------------------------------------------


def _check_pod(pod: Manifest) -> None:
    """A helper pod the docs start: valid, the deploy/ image and user, existing claims."""
    kubernetes_validate.validate(pod, MIN_KUBERNETES, strict=True)
    (container,) = pod["spec"]["containers"]
    runtime = find("Deployment", RUNTIME, DOCUMENTS)
    assert container["image"] == the_container(runtime)["image"]
    context, expected = pod["spec"]["securityContext"], pod_spec(runtime)["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (
        expected["runAsUser"],
        expected["runAsGroup"],
    )
    claims = {d.name for d in DOCUMENTS if d.kind == "PersistentVolumeClaim"}
    for volume in pod["spec"]["volumes"]:
        assert volume["persistentVolumeClaim"]["claimName"] in claims


def _check_overlay(overlay: Manifest, file: str) -> None:
    """An overlay of the base: it points at deploy/, renames the image the base uses and
    patches kinds the base has, into objects that stay valid."""
    folder = PurePosixPath(file).parent
    (base,) = overlay["resources"]
    assert (ROOT / folder / base).resolve() == DEPLOY.resolve()
    images = {the_container(w.body)["image"] for w in workloads(DOCUMENTS)}
    assert {image["name"] for image in overlay["images"]} == images
    for patch in overlay["patches"]:
        targets = [d for d in DOCUMENTS if d.kind == patch["target"]["kind"]]
        assert targets, f"the patch targets {patch['target']}, which the base does not have"
        for document in targets:
            patched = _apply_json_patch(document.body, yaml.safe_load(patch["patch"]))
            kubernetes_validate.validate(patched, MIN_KUBERNETES, strict=True)


def _apply_json_patch(body: Manifest, operations: list[dict[str, Any]]) -> Manifest:
    patched: Manifest = yaml.safe_load(yaml.safe_dump(body))
    for operation in operations:
        assert operation["op"] == "add", "only `add` is checked here"
        *parents, last = operation["path"].strip("/").split("/")
        node = patched
        for key in parents:
            node = node[key]
        node[last] = operation["value"]
    return patched


def _check_adapter_rule(config: Manifest) -> None:
    """The prometheus-adapter rule serves the HPA's Pods metric from a series the runtime
    really exports, per pod."""
    (rule,) = config["rules"]
    hpa = find("HorizontalPodAutoscaler", RUNTIME, DOCUMENTS)
    (pods,) = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    series = re.match(r"'?(\w+)\{", rule["seriesQuery"])
    assert series, rule["seriesQuery"]
    assert re.fullmatch(rule["name"]["matches"], series[1])
    assert rule["name"]["as"] == pods["metric"]["name"]
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]
    assert series[1] in _runtime_metric_names()


def _runtime_metric_names() -> set[str]:
    with tempfile.TemporaryDirectory() as repository:
        settings = RuntimeSettings(repository=Path(repository), poll_interval_s=0)
        with TestClient(create_runtime_app(settings)) as client:
            text = client.get("/metrics").text
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


def _check_discovery(section: Manifest) -> None:
    assert section == {"replicas": gateway_yaml(DOCUMENTS)["replicas"]}


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.file or b.code.split("\n")[0])
def test_yaml_example(block: Block) -> None:
    body = yaml.safe_load(block.code)
    if body.get("kind") == "Kustomization":
        assert block.file, "an overlay example must say where it lives"
        _check_overlay(body, block.file)
    elif body.get("kind") == "Pod":
        _check_pod(body)
    elif "rules" in body:
        _check_adapter_rule(body)
    elif set(body) == {"replicas"}:
        _check_discovery(body)
    else:
        pytest.fail(f"no check for this YAML example of docs/deploy.md:\n{block.code}")


# --- shell ----------------------------------------------------------------------------------


@dataclass
class Session:
    """What earlier commands of the page left behind (folders built, pods started)."""

    built: set[str] = field(default_factory=set)
    pods: dict[str, Manifest] = field(default_factory=dict)


def commands(code: str) -> list[list[str]]:
    return [
        words
        for line in code.replace("\\\n", " ").splitlines()
        if (words := shlex.split(line, comments=True))
    ]


def _workload(target: str) -> Manifest:
    kind, _, name = target.partition("/")
    return find(WORKLOAD_KINDS[kind], name, DOCUMENTS)


def _pod_mount(pod: Manifest, claim: str) -> str:
    volumes = {
        v["name"]
        for v in pod["spec"]["volumes"]
        if v["persistentVolumeClaim"]["claimName"] == claim
    }
    (container,) = pod["spec"]["containers"]
    (mount,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in volumes]
    return str(mount)


def _repository() -> str:
    return option(the_container(find("Deployment", RUNTIME, DOCUMENTS))["args"], "--repository")


def parse(arguments: list[str]) -> Any:
    """``driftgate ARGUMENTS`` as the CLI parses them; a refusal fails the test."""
    try:
        return build_parser().parse_args(arguments)
    except SystemExit:
        pytest.fail(f"driftgate refuses the documented arguments: {shlex.join(arguments)}")


def check(words: list[str], session: Session) -> None:  # noqa: PLR0915
    match words:
        case ["docker", "build", "-t", tag, context]:
            assert (ROOT / context / "Dockerfile").is_file()
            assert {the_container(w.body)["image"] for w in workloads(DOCUMENTS)} == {tag}
        case ["kind", "load", "docker-image", tag]:
            assert {the_container(w.body)["image"] for w in workloads(DOCUMENTS)} == {tag}
        case ["kubectl", "create", "secret", "generic", name, literal]:
            key, _, value = literal.removeprefix("--from-literal=").partition("=")
            readers = [GATEWAY, JOBS]
            for reader in readers:
                kind = "CronJob" if reader == JOBS else "Deployment"
                refs = env_from_secrets(the_container(find(kind, reader, DOCUMENTS)))
                assert (name, key) in refs.values(), f"{reader} does not read {name}/{key}"
            # 48 random bytes in base64: 64 characters, enough for every HS* algorithm.
            assert value == "$(openssl rand -base64 48)"
        case ["kubectl", "apply", "-k", folder]:
            assert (ROOT / folder / "kustomization.yaml").resolve() == KUSTOMIZATION
        case ["kubectl", "apply", "-f", file]:
            assert file in FILES, f"{file}: the page shows no block for it"
            body = FILES[file]
            session.pods[body["metadata"]["name"]] = body
        case ["kubectl", "wait", "--for=condition=Ready", target, *_]:
            assert target.removeprefix("pod/") in session.pods
        case ["driftgate", "demo", "build", folder]:
            parse(words[1:])
            session.built.add(folder)
        case ["kubectl", "cp", source, target]:
            pod, _, path = target.partition(":")
            assert PurePosixPath(source).parent.as_posix() in session.built
            assert PurePosixPath(source).name in DEMO_MODELS
            destination = PurePosixPath(path)
            assert destination.parent == PurePosixPath(
                _pod_mount(session.pods[pod], "driftgate-models")
            )
            assert destination.parent == PurePosixPath(_repository())
            assert destination.name.startswith("."), "copy under a hidden name first"
        case ["kubectl", "exec", pod, "--", "mv", source, destination]:
            assert pod in session.pods
            hidden, final = PurePosixPath(source), PurePosixPath(destination)
            assert hidden.parent == final.parent == PurePosixPath(_repository())
            assert hidden.name == "." + final.name
        case ["kubectl", "exec", target, "--", "driftgate", *arguments]:
            workload = _workload(target)
            parsed = parse(arguments)
            if getattr(parsed, "config", None) is not None:
                assert mounted_config_file(workload, str(parsed.config)) == (
                    GATEWAY,
                    "gateway.yaml",
                )
            if parsed.command == "sql":
                assert str(parsed.store) == gateway_yaml(DOCUMENTS)["log"]["store"]
        case ["kubectl", "delete", "pod", pod]:
            assert session.pods.pop(pod)
        case ["kubectl", "rollout", "restart", target]:
            assert _workload(target)["kind"] == "Deployment"
        case ["kubectl", "port-forward", target, ports]:
            kind, _, name = target.partition("/")
            assert kind == "svc"
            remote = int(ports.partition(":")[2])
            assert remote in [p["port"] for p in find("Service", name, DOCUMENTS)["spec"]["ports"]]
        case ["kubectl", "create", "job", source, _]:
            assert _workload(source.removeprefix("--from="))["kind"] == "CronJob"
        case _:
            pytest.fail(f"no check for this command of docs/deploy.md: {shlex.join(words)}")


def test_shell_examples() -> None:
    session = Session()
    checked = 0
    for block in SHELL_BLOCKS:
        for words in commands(block.code):
            check(words, session)
            checked += 1

    assert checked >= 10
    assert session.pods == {}, "a helper pod the page starts is never deleted"


def test_a_command_with_no_check_fails() -> None:
    with pytest.raises(pytest.fail.Exception, match="no check"):
        check(["kubectl", "scale", "deployment/driftgate-gateway", "--replicas=3"], Session())


def test_a_secret_the_pods_do_not_read_fails() -> None:
    with pytest.raises(AssertionError, match="does not read"):
        check(["kubectl", "create", "secret", "generic", "jwt", "--from-literal=key=x"], Session())


def test_the_page_names_the_kubernetes_versions_the_manifests_are_checked_against() -> None:
    text = " ".join(DOC.read_text().split())
    latest = ".".join(kubernetes_validate.latest_version().split(".")[:2])

    assert f"Kubernetes {MIN_KUBERNETES} and {latest} schemas" in text
    assert f"Kubernetes {MIN_KUBERNETES} or newer" in text
