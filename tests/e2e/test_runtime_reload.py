"""A running ``driftgate runtime`` follows its repository on disk, without a restart.

One story in four steps, run in file order against one runtime that scans every 0.3 s. The
scratch repository starts with ``titanic`` version 1 only (``version_policy: {latest: 1}``)
and ``digits`` as a bystander:

1. version 2 is copied in under a hidden name and renamed into place: it becomes the
   default while requests keep succeeding, and version 1 is unloaded;
2. a broken version 3 is published: it is reported (readiness 503, metadata, the log) and
   version 2 keeps serving; ``digits`` does not notice;
3. version 3's files are fixed: it is retried because they changed, loads and takes over;
4. the ``digits`` folder is deleted: the model is gone (404).

Every wait polls with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.demo.digits import write_sample_digit_png
from tests.e2e.processes import RunningProcess, driftgate_process, free_port

pytestmark = pytest.mark.e2e

PASSENGER = {"fare": 7.25, "sex": "male", "embarked": "S", "pclass": "3", "age": 22}
DEADLINE_S = 15.0


@dataclass
class Scratch:
    """The scratch repository, the runtime watching it and a client to that runtime."""

    repository: Path
    demo: Path
    runtime: RunningProcess
    http: httpx.Client

    def publish(
        self, model: str, version: int, copy_of: int, edit: Callable[[Path], None] | None = None
    ) -> Path:
        """Copy the demo's version ``copy_of`` in as ``.{version}``, edit it, rename it in place.

        A scan ignores hidden folders, so it never sees a half-copied version.
        """
        staging = self.repository / model / f".{version}"
        shutil.copytree(self.demo / model / str(copy_of), staging)
        if edit is not None:
            edit(staging)
        return staging.rename(self.repository / model / str(version))

    def default_version(self, model: str = "titanic") -> str:
        version: str = self.http.get(f"/v1/models/{model}/describe").json()["version"]
        return version

    def listed_versions(self, model: str = "titanic") -> dict[str, str]:
        """``GET /v1/models``: version -> state of ``model``."""
        for entry in self.http.get("/v1/models").json()["models"]:
            if entry["name"] == model:
                return {v["version"]: v["state"] for v in entry["versions"]}
        return {}


@pytest.fixture(scope="module")
def scratch(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    folder = tmp_path_factory.mktemp("reload")
    repository = folder / "models"
    shutil.copytree(demo_repository / "titanic" / "1", repository / "titanic" / "1")
    (repository / "titanic" / "config.yaml").write_text("version_policy: {latest: 1}\n")
    shutil.copytree(demo_repository / "digits", repository / "digits")
    port = free_port()
    args = ["runtime", "--repository", str(repository), "--port", str(port)]
    args += ["--poll-interval", "0.3"]
    with (
        driftgate_process(args, port, log_path=folder / "runtime.log") as runtime,
        httpx.Client(base_url=runtime.url, timeout=10) as http,
    ):
        yield Scratch(repository, demo_repository, runtime, http)


def wait_for(what: str, condition: Callable[[], bool], deadline_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail, naming ``what``, past the deadline."""
    give_up = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"gave up after {deadline_s}s waiting for {what}")
        time.sleep(0.05)


class Traffic:
    """Clients in background threads, each sending the passenger to titanic back to back."""

    def __init__(self, url: str, clients: int = 3) -> None:
        self.url = url
        #: Per client, in order: (status, the version that answered or the error).
        self.answers_by_client: list[list[tuple[int, str]]] = [[] for _ in range(clients)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, args=(answers,), daemon=True)
            for answers in self.answers_by_client
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _send(self, answers: list[tuple[int, str]]) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/v1/models/titanic/eval", json=PASSENGER)
                    ok = response.status_code == 200
                    detail = response.json()["version"] if ok else response.text
                    answers.append((response.status_code, detail))
                except httpx.HTTPError as exc:
                    answers.append((0, repr(exc)))

    @property
    def answers(self) -> list[tuple[int, str]]:
        return [answer for answers in self.answers_by_client for answer in answers]

    def count(self) -> int:
        return sum(len(answers) for answers in self.answers_by_client)

    def answered_by(self, version: str, count: int = 1) -> bool:
        return sum(detail == version for _, detail in self.answers) >= count

    def failures(self) -> list[tuple[int, str]]:
        return [answer for answer in self.answers if answer[0] != 200]

    def versions_only_move_forward(self) -> bool:
        """Once a client was answered by the new version, it never met the old one again."""
        return all(
            [detail for _, detail in answers] == sorted(detail for _, detail in answers)
            for answers in self.answers_by_client
        )


def test_a_new_version_renamed_into_place_takes_over_without_failing_a_request(
    scratch: Scratch,
) -> None:
    assert scratch.default_version() == "1"
    with Traffic(scratch.runtime.url) as traffic:
        wait_for("traffic answered by version 1", lambda: traffic.answered_by("1", 20))
        scratch.publish("titanic", 2, copy_of=2)
        wait_for("version 2 to become the default", lambda: scratch.default_version() == "2")
        wait_for("version 1 to be unloaded", lambda: scratch.listed_versions() == {"2": "READY"})
        after_swap = traffic.count()
        wait_for("traffic after the swap", lambda: traffic.count() > after_swap + 20)

    assert traffic.failures() == [], traffic.failures()[:5]
    assert {detail for _, detail in traffic.answers} == {"1", "2"}
    assert traffic.versions_only_move_forward()
    gone = scratch.http.get("/v2/models/titanic/versions/1/ready")
    assert gone.status_code == 404, gone.text
    assert "model titanic version 1 unloaded" in scratch.runtime.log()


def break_the_classifier_reference(version_dir: Path) -> None:
    pipeline = version_dir / "pipeline.yaml"
    text = pipeline.read_text()
    assert "model: classifier.onnx" in text
    pipeline.write_text(text.replace("model: classifier.onnx", "model: missing.onnx"))


def test_a_broken_version_is_reported_and_the_previous_one_keeps_serving(
    scratch: Scratch, tmp_path: Path
) -> None:
    scratch.publish("titanic", 3, copy_of=2, edit=break_the_classifier_reference)
    wait_for(
        "version 3 to fail to load",
        lambda: scratch.listed_versions() == {"2": "READY", "3": "UNAVAILABLE"},
    )

    ready = scratch.http.get("/v2/models/titanic/versions/3/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert "file 'missing.onnx' not found" in ready.json()["error"]
    metadata: dict[str, Any] = scratch.http.get("/v2/models/titanic/versions/3").json()
    assert metadata["state"] == "UNAVAILABLE"
    assert "step 'classifier'" in metadata["error"] and "missing.onnx" in metadata["error"]
    tf_status = scratch.http.get("/v1/models/titanic/versions/3").json()["model_version_status"]
    assert tf_status[0]["state"] == "END"
    assert "missing.onnx" in tf_status[0]["status"]["error_message"]

    # Requests that name no version still go to version 2, and the model reads as ready.
    assert scratch.http.get("/v2/models/titanic/ready").status_code == 200
    answer = scratch.http.post("/v1/models/titanic/eval", json=PASSENGER)
    assert answer.status_code == 200 and answer.json()["version"] == "2"
    # Asking for version 3 by name says why it cannot answer.
    refused = scratch.http.post("/v1/models/titanic/versions/3/eval", json=PASSENGER)
    assert refused.status_code == 503
    assert "version 3 is unavailable" in refused.json()["error"]

    # The other model never notices.
    assert scratch.http.get("/v2/models/digits/ready").status_code == 200
    png = write_sample_digit_png(tmp_path / "7.png", 7).read_bytes()
    digit = scratch.http.post(
        "/v1/models/digits/eval", content=png, headers={"content-type": "image/png"}
    )
    assert digit.status_code == 200 and digit.json()["outputs"]["label"] == 7

    wait_for("the failure in the log", lambda: "version 3 failed to load" in scratch.runtime.log())
    lines = scratch.runtime.log().splitlines()
    failure = next(line for line in lines if "version 3 failed to load" in line)
    assert "model titanic" in failure and "missing.onnx" in failure


def test_fixing_the_broken_version_retries_it_and_it_takes_over(
    scratch: Scratch, tmp_path: Path
) -> None:
    # Write the good file beside the repository and rename it over the broken one, so that
    # a scan sees either file whole.
    fixed = tmp_path / "pipeline.yaml"
    shutil.copyfile(scratch.demo / "titanic" / "2" / "pipeline.yaml", fixed)
    with Traffic(scratch.runtime.url) as traffic:
        wait_for("traffic answered by version 2", lambda: traffic.answered_by("2", 20))
        os.replace(fixed, scratch.repository / "titanic" / "3" / "pipeline.yaml")
        wait_for("version 3 to become the default", lambda: scratch.default_version() == "3")
        wait_for("version 2 to be unloaded", lambda: scratch.listed_versions() == {"3": "READY"})
        # The swap is followed by one full GC pass (runtime/heap.py), a pause in which the
        # checks above can win the race against the traffic: wait for version 3 to answer it.
        wait_for("traffic answered by version 3", lambda: traffic.answered_by("3", 20))

    assert traffic.failures() == [], traffic.failures()[:5]
    assert {detail for _, detail in traffic.answers} == {"2", "3"}
    assert traffic.versions_only_move_forward()
    assert scratch.http.get("/v2/models/titanic/versions/3/ready").json()["ready"] is True
    metadata = scratch.http.get("/v2/models/titanic/versions/3").json()
    assert metadata["state"] == "READY" and metadata["versions"] == ["3"]
    log = scratch.runtime.log()
    assert log.index("version 3 failed to load") < log.index("model titanic version 3 loaded")


def test_a_deleted_model_folder_removes_the_model(scratch: Scratch) -> None:
    shutil.rmtree(scratch.repository / "digits")
    wait_for(
        "digits to be removed",
        lambda: scratch.http.get("/v2/models/digits/ready").status_code == 404,
    )
    gone = scratch.http.get("/v2/models/digits/ready").json()
    assert gone == {"error": "unknown model 'digits'; served models: titanic"}
    assert scratch.http.post("/v1/models/titanic/eval", json=PASSENGER).status_code == 200
    assert "model digits removed from the repository" in scratch.runtime.log()
