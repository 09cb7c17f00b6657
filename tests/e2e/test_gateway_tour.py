"""The gateway examples of the README and docs/gateway.md, run against a real ``driftgate up``.

A ```sh block right after a ``<!-- gateway-tour -->`` line is a gateway example. The
examples of one document run in order as one bash script (``set -euo pipefail``), as a
reader would type them into one terminal, so ``$TOKEN`` from one block serves the next.
A ```text or ```json block right after an example (a blank line between them, no prose) is
its expected output: ```text lines must match exactly (trailing spaces and carriage
returns aside), ```json the last line of output as JSON.

Rewritten before running: ``localhost:8000`` to the test gateway, ``driftgate token create``
to use the test gateway's ``gateway.yaml``, ``/tmp/`` to a temporary folder and
``runtime/demo/`` to this checkout's; ``DRIFTGATE_GATEWAY_URL`` points ``driftgate routes``
at the test gateway, as its default does at ``make up``'s. The commands themselves run as
written, in the environment of a reader who followed the README's ``. .venv/bin/activate``
(``activated_environment``): a command nothing on that ``PATH`` provides fails the test. The
examples run in a folder where ``var`` is the test system's home, as ``var/`` is ``make
up``'s state for a reader in the checkout (so commands that default to
``var/gateway.yaml`` find it). Routes the examples change are put back after each
document. As on a first ``make up``, the titanic versions have reference profiles built
from their training set.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftgate.reference import build_reference
from tests.e2e.gateway_system import LocalSystem, local_system, wait_for
from tests.e2e.processes import activated_environment

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", "docs/gateway.md", "docs/drift.md", "docs/prediction-log.md"]
MARKED = re.compile(
    r"^<!-- gateway-tour -->\n```sh\n(?P<code>.*?)```\n"
    r"(?:\n```(?P<kind>text|json)\n(?P<expected>.*?)```)?",
    re.DOTALL | re.MULTILINE,
)
END = "@@ end of example @@"


@dataclass(frozen=True)
class Example:
    code: str
    kind: str | None  # "text", "json", or None when nothing is expected
    expected: str | None


def gateway_examples(markdown: Path) -> list[Example]:
    return [
        Example(m["code"], m["kind"], m["expected"]) for m in MARKED.finditer(markdown.read_text())
    ]


def rewrite(code: str, system: LocalSystem, tmp_path: Path) -> str:
    code = code.replace("/tmp/", f"{tmp_path}/")  # first: the paths below may be in /tmp
    code = code.replace("localhost:8000", system.url.removeprefix("http://"))
    code = re.sub(r"(?<![\w/])runtime/demo/", f"{ROOT}/runtime/demo/", code)
    return code.replace(
        "driftgate token create",
        f"driftgate token create --config {system.home / 'gateway.yaml'}",
    )


def check_output(example: Example, output: str) -> None:
    if example.kind == "text":
        lines = [line.rstrip() for line in output.splitlines()]
        assert lines == (example.expected or "").splitlines(), f"{example.code}\n{output}"
    elif example.kind == "json":
        last = output.splitlines()[-1] if output.strip() else ""
        assert json.loads(last) == json.loads(example.expected or ""), f"{example.code}\n{output}"


@pytest.fixture(scope="module")
def system(
    demo_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalSystem]:
    workdir = tmp_path_factory.mktemp("up-tour")
    home = workdir / "home"
    shutil.copytree(demo_repository, home / "models")
    for version in ("1", "2"):  # what `make up` builds on first start (titanic_pmml aside)
        training = ROOT / "runtime" / "demo" / "data" / "titanic" / "titanic_reference.csv"
        build_reference(home / "models", "titanic", version, training, label="Survived")
    with local_system(home, workdir / "up.log") as running:
        yield running


@pytest.fixture()
def routes_put_back(system: LocalSystem) -> Iterator[None]:
    with system.client("tour", "admin") as admin:
        listed = admin.get("/admin/routes").json()
        before = {name: route["policy"] for name, route in listed.items()}
        yield
        for name, policy in before.items():
            if admin.get(f"/admin/routes/{name}").json()["policy"] != policy:
                admin.put(f"/admin/routes/{name}", json=policy).raise_for_status()


def test_up_says_when_it_is_ready(system: LocalSystem) -> None:
    """uvicorn's "running on" line came a minute before the demo models were loaded, and
    nothing said when the system could answer."""
    line = wait_for(
        lambda: next((x for x in system.process.log().splitlines() if "ready after" in x), None),
        10,
        "up's ready line",
    )
    assert f"the gateway on {system.url} answers (2 runtime replicas supervised)" in line


def test_the_readme_tours_the_gateway() -> None:
    examples = gateway_examples(ROOT / "README.md")
    assert len(examples) >= 3
    assert all("localhost:8000" in e.code or "driftgate " in e.code for e in examples)


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.usefixtures("routes_put_back")
def test_gateway_examples_run_as_written(
    system: LocalSystem, tmp_path: Path, document: str
) -> None:
    examples = gateway_examples(ROOT / document)
    assert examples, f"{document} has no <!-- gateway-tour --> examples"
    (tmp_path / "var").symlink_to(system.home)
    script = "\n".join(f"{rewrite(e.code, system, tmp_path)}\necho '{END}'" for e in examples)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
        env={**activated_environment(), "DRIFTGATE_GATEWAY_URL": system.url},
    )
    outputs = done.stdout.split(f"{END}\n")
    finished = len(outputs) - 1
    if done.returncode != 0:
        failed = examples[finished].code if finished < len(examples) else "(after the last)"
        pytest.fail(f"example {finished} of {document} failed:\n{failed}\n{done.stderr}")
    for example, output in zip(examples, outputs, strict=False):
        check_output(example, output)


# -- every dialect goes through the same routing ----------------------------------------

PASSENGER = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}


def test_tf_serving_and_open_inference_protocol_are_routed_like_eval(
    system: LocalSystem,
) -> None:
    with system.client("app1", "predict") as client:
        rows = client.post("/v1/models/titanic:predict", json={"instances": [PASSENGER]})
        oip = client.post(
            "/v2/models/titanic/infer",
            json={
                "inputs": [
                    {
                        "name": name,
                        "shape": [1, 1],
                        "datatype": "BYTES" if isinstance(value, str) else "FP32",
                        "data": [value],
                    }
                    for name, value in PASSENGER.items()
                ]
            },
        )
    for answer in (rows, oip):
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-driftgate-arm"] in ("stable", "canary")
        assert answer.headers["x-driftgate-model"] == "titanic"
    # The same subject is sticky to one arm whatever the dialect.
    assert rows.headers["x-driftgate-arm"] == oip.headers["x-driftgate-arm"]
    assert oip.json()["model_version"] == oip.headers["x-driftgate-version"]


def test_the_triton_client_works_through_the_gateway(system: LocalSystem) -> None:
    import numpy as np
    import tritonclient.http as triton

    auth = {"Authorization": f"Bearer {system.token('triton', 'predict')}"}
    client = triton.InferenceServerClient(url=system.url.removeprefix("http://"))
    assert client.is_server_ready()
    assert client.get_model_metadata("iris", headers=auth)["name"] == "iris"
    features = triton.InferInput("features", [1, 4], "FP32")
    features.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    result = client.infer("iris", [features], headers=auth)
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None and int(probabilities.argmax()) == 0  # setosa


def test_png_uploads_are_routed_to_the_image_model(system: LocalSystem, tmp_path: Path) -> None:
    from runtime.demo.digits import write_sample_digit_png

    png = write_sample_digit_png(tmp_path / "4.png", 4).read_bytes()
    with system.client("app1", "predict:digits") as client:
        answer = client.post(
            "/v1/models/digits/eval", content=png, headers={"content-type": "image/png"}
        )
        refused = client.post("/v1/models/titanic/eval", json=PASSENGER)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"]["label"] == 4
    assert answer.headers["x-driftgate-role"] == "primary"
    assert refused.status_code == 403  # the token is scoped to digits only
