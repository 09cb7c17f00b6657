"""Overload and client hang-ups, through the runtime under uvicorn on a loopback port.

- Explanations are admitted apart from predictions (``runtime.explain_slots``): half the
  inference threads at most, a few more waiting per version, beyond that 503 naming the
  version and ``DRIFTGATE_MAX_WAITING_EXPLANATIONS``; predictions keep a thread meanwhile.
- A client that hangs up stops its explanation (waiting: it never runs; running: no model
  call after the one in progress), and is counted as 499.
- A prediction whose client hangs up while it waits for an inference thread never runs.
- A change of ``batching:`` never runs two calls of one version at once.

The model is ``gate``: ``y = a * b``, whose calls of more than ``Gate.rows_above`` rows
hold their thread until the test opens the gate. Real sockets, because only a real server
tells a handler that its client has gone.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn

import runtime.backends
from drift.profile import build_profile
from drift.references import ReferenceStore
from runtime.app import create_app
from runtime.batching import Batcher
from runtime.batching_config import BatchingConfig
from runtime.explain_slots import running_explanations_for
from runtime.settings import RuntimeSettings, RuntimeSettingsError
from runtime.tensors import ModelMetadata, TensorSpec


class Gate:
    """What the ``gate`` backends of one test share with it (reset for every test)."""

    rows_above = 1  # calls of more rows than this wait for ``opened``
    opened = threading.Event()
    waiting = threading.Semaphore(0)  # one permit per call that reached the gate
    calls: list[int] = []  # rows of every call, in order
    active = 0  # calls running now
    most_active = 0  # the most calls that ever ran at once
    lock = threading.Lock()

    @classmethod
    def reset(cls, rows_above: int = 1) -> None:
        cls.rows_above, cls.opened, cls.waiting = (
            rows_above,
            threading.Event(),
            threading.Semaphore(0),
        )
        cls.calls, cls.active, cls.most_active = [], 0, 0


class GateBackend:
    format = "gate"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def load(self, path: Path) -> None:
        pass

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            inputs=(TensorSpec("a", "FP32", (-1,)), TensorSpec("b", "FP32", (-1,))),
            outputs=(TensorSpec("y", "FP32", (-1,)),),
            platform=self.format,
        )

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(inputs["a"])
        with Gate.lock:
            Gate.calls.append(rows)
            Gate.active += 1
            Gate.most_active = max(Gate.most_active, Gate.active)
        try:
            if rows > Gate.rows_above:
                Gate.waiting.release()
                assert Gate.opened.wait(10), "the test never opened the gate"
            return {"y": (inputs["a"] * inputs["b"]).astype(np.float32)}
        finally:
            with Gate.lock:
                Gate.active -= 1

    def unload(self) -> None:
        pass


@pytest.fixture(autouse=True)
def gate_format(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(runtime.backends.FORMATS, "gate", f"{__name__}:GateBackend")
    Gate.reset()
    yield
    Gate.opened.set()  # never leave a server thread waiting on a failed test


def gate_repository(root: Path, config: str = "format: gate\n") -> Path:
    """``gate`` version 1, with a reference profile to explain against."""
    (root / "gate" / "1").mkdir(parents=True)
    (root / "gate" / "1" / "model.txt").write_text("gate\n")
    (root / "gate" / "config.yaml").write_text(config)
    rng = np.random.default_rng(0)
    columns = {"in_a": rng.normal(size=200), "in_b": rng.normal(size=200)}
    ReferenceStore(root).save(build_profile("gate", "1", columns, "test"))
    return root


class Runtime:
    """The runtime app under uvicorn in a thread."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.app = create_app(settings)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._listener]}
        )

    def __enter__(self) -> Runtime:
        self._thread.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(self.url("/v2/health/ready")) as ready:
                    if ready.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, "runtime never became ready"
            time.sleep(0.05)

    def __exit__(self, *_: object) -> None:
        Gate.opened.set()
        self._server.should_exit = True
        self._thread.join(20)
        self._listener.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def send(self, path: str, body: Any) -> socket.socket:
        """A POST written on a socket, left open for the caller to read or close."""
        data = json.dumps(body).encode()
        connection = socket.create_connection(("127.0.0.1", self.port))
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        return connection

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(self.url("/metrics")) as scraped:
            text = scraped.read().decode()
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{{wanted}}} "):
                return float(line.split()[-1])
        return 0.0


def answer(connection: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], Any]:
    """Status, headers (lower-case names) and JSON body of the response on ``connection``
    (closes it)."""
    connection.settimeout(timeout)
    response = http.client.HTTPResponse(connection)
    try:
        response.begin()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, json.loads(response.read())
    finally:
        response.close()
        connection.close()


def answered_within(connection: socket.socket, seconds: float) -> bool:
    """Whether a response starts arriving on ``connection`` within ``seconds``."""
    connection.settimeout(seconds)
    try:
        return bool(connection.recv(1, socket.MSG_PEEK))
    except TimeoutError:
        return False


def until_at_gate(calls: int = 1) -> None:
    for _ in range(calls):
        assert Gate.waiting.acquire(timeout=10), "no call reached the gate"


EXPLAIN = "/v1/models/gate/versions/1/explain"
EVAL = "/v1/models/gate/versions/1/eval"
INSTANCE = {"a": 1.5, "b": -2.0}


# --- explanations --------------------------------------------------------------------------


def test_a_burst_of_explanations_is_bounded_and_leaves_threads_to_predictions(
    tmp_path: Path,
) -> None:
    """Two inference threads: one explanation runs, one waits, the next is refused at once;
    a prediction is answered meanwhile, from the thread the explanations may not take."""
    settings = RuntimeSettings(
        repository=gate_repository(tmp_path),
        poll_interval_s=0,
        inference_threads=2,
        inline_inference_max_s=0,
        max_waiting_explanations=1,
    )
    with Runtime(settings) as served:
        running = served.send(EXPLAIN, INSTANCE)
        until_at_gate()
        waiting = served.send(EXPLAIN, INSTANCE)
        time.sleep(0.2)

        status, headers, body = answer(served.send(EXPLAIN, INSTANCE), timeout=2)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["x-model-version"] == "1"
        assert body == {
            "error": "model 'gate' version 1 is overloaded: 1 explanations already wait for an "
            "inference thread (DRIFTGATE_MAX_WAITING_EXPLANATIONS; at most 1 run at once); "
            "retry shortly"
        }
        status, _, body = answer(served.send(EVAL, INSTANCE), timeout=2)
        assert (status, body["outputs"]["y"]) == (200, -3.0)
        assert not answered_within(running, 0.05) and not answered_within(waiting, 0.05)

        Gate.opened.set()
        for explained in (running, waiting):
            status, _, body = answer(explained)
            assert status == 200, body
            assert (
                abs(body["base_value"] + sum(body["explanations"]["attributions"].values()) + 3)
                < 1e-4
            )
        assert Gate.most_active == 2  # one explanation and the prediction, never two explanations
        labels = {"model": "gate", "version": "1"}
        rejected = served.metric(
            "driftgate_runtime_overload_rejections_total", reason="waiting_explanations", **labels
        )
        assert rejected == 1
        codes = {
            code: served.metric(
                "driftgate_runtime_requests_total", code=code, protocol="explain", **labels
            )
            for code in ("200", "503")
        }
        assert codes == {"200": 2, "503": 1}


def test_an_explanation_whose_client_hangs_up_stops_and_gives_its_slot_back(
    tmp_path: Path,
) -> None:
    """One hangs up while it waits (it never runs), one while its first model call runs (no
    call follows); both are counted as 499, and the slot serves the next explanation."""
    settings = RuntimeSettings(
        repository=gate_repository(tmp_path),
        poll_interval_s=0,
        inference_threads=2,
        inline_inference_max_s=0,
    )
    with Runtime(settings) as served:
        running = served.send(EXPLAIN, INSTANCE)
        until_at_gate()
        waiting = served.send(EXPLAIN, INSTANCE)
        time.sleep(0.2)
        waiting.close()
        running.close()
        time.sleep(0.3)  # the server sees both connections close
        labels = {"model": "gate", "version": "1", "protocol": "explain"}
        # The running one ends with its model call: until then it holds its version loaded.
        assert served.metric("driftgate_runtime_requests_total", code="499", **labels) == 1
        Gate.opened.set()
        time.sleep(0.5)  # long enough for whole explanations to have run

        assert len(Gate.calls) == 1  # the call in progress when its client went; nothing more
        status, _, body = answer(served.send(EXPLAIN, INSTANCE), timeout=5)
        assert status == 200, body
        assert served.metric("driftgate_runtime_requests_total", code="499", **labels) == 2
        assert served.metric("driftgate_runtime_requests_total", code="200", **labels) == 1


# --- predictions ---------------------------------------------------------------------------


def test_a_prediction_whose_client_hangs_up_while_it_waits_for_a_thread_never_runs(
    tmp_path: Path,
) -> None:
    settings = RuntimeSettings(
        repository=gate_repository(tmp_path),
        poll_interval_s=0,
        inference_threads=1,
        inline_inference_max_s=0,
    )
    with Runtime(settings) as served:
        busy = served.send(EVAL, {"a": [1, 2], "b": [3, 4]})  # two rows: held at the gate
        until_at_gate()
        for value in (5, 6):  # wait for the only thread, then their clients give up
            served.send(EVAL, {"a": value, "b": 1}).close()
        time.sleep(0.3)
        Gate.opened.set()
        status, _, body = answer(busy)
        assert (status, body["outputs"]["y"]) == (200, [3.0, 8.0])
        time.sleep(0.3)  # long enough for the two calls to have run

        assert Gate.calls == [2]
        labels = {"model": "gate", "version": "1", "protocol": "eval"}
        assert served.metric("driftgate_runtime_requests_total", code="499", **labels) == 2
        status, _, body = answer(served.send(EVAL, {"a": 7, "b": 1}))  # places were given back
        assert (status, body["outputs"]["y"]) == (200, 7.0)


# --- a change of batching ------------------------------------------------------------------


def test_a_change_of_batching_never_runs_two_calls_of_a_version_at_once(tmp_path: Path) -> None:
    """The new queue waits for the old one's call: the model sees one call at a time."""
    config = "format: gate\nbatching: {max_batch_size: 8}\n"
    settings = RuntimeSettings(
        repository=gate_repository(tmp_path, config),
        poll_interval_s=0,
        inference_threads=4,
        inline_inference_max_s=0,
    )
    with Runtime(settings) as served:
        busy = served.send(EVAL, {"a": [1, 2], "b": [3, 4]})  # held at the gate
        until_at_gate()
        (tmp_path / "gate" / "config.yaml").write_text(
            "format: gate\nbatching: {max_batch_size: 4}\n"
        )
        served.app.state.runtime.repository.scan()
        after = served.send(EVAL, {"a": 5, "b": 1})

        assert not answered_within(after, 0.5)  # queued behind the old queue's call
        Gate.opened.set()
        assert answer(busy)[2]["outputs"]["y"] == [3.0, 8.0]
        assert answer(after)[2]["outputs"]["y"] == 5.0
        assert Gate.calls == [2, 1]
        assert Gate.most_active == 1


def test_a_queue_replaced_twice_while_busy_still_runs_one_call_at_a_time() -> None:
    """Two quick changes of ``batching:``: the newest queue waits for the oldest one's call
    through the one between them, which never ran anything."""
    calls: list[int] = []
    running = [0, 0]  # now, most ever

    async def run(inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        running[0] += 1
        running[1] = max(running)
        try:
            calls.append(rows)
            if rows > 1:
                await opened.wait()
            return inputs
        finally:
            running[0] -= 1

    async def main() -> None:
        first = Batcher(BatchingConfig(8, 0.0), run)
        busy = asyncio.ensure_future(first.submit({"x": np.ones((2, 1))}, 2))
        await asyncio.sleep(0.01)
        second = Batcher(BatchingConfig(4, 0.0), run, after=first)
        third = Batcher(BatchingConfig(2, 0.0), run, after=second)
        later = asyncio.ensure_future(third.submit({"x": np.ones((1, 1))}, 1))
        await asyncio.sleep(0.05)
        assert not later.done()
        opened.set()
        await asyncio.wait_for(asyncio.gather(busy, later), 5)

    opened = asyncio.Event()
    asyncio.run(main())
    assert calls == [2, 1]
    assert running[1] == 1


def test_the_explanation_bound_is_a_setting_of_at_least_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DRIFTGATE_MAX_WAITING_EXPLANATIONS", raising=False)
    assert RuntimeSettings(repository=tmp_path).max_waiting_explanations == 4
    monkeypatch.setenv("DRIFTGATE_MAX_WAITING_EXPLANATIONS", "16")
    assert RuntimeSettings(repository=tmp_path).max_waiting_explanations == 16
    for bad in ("0", "many"):
        monkeypatch.setenv("DRIFTGATE_MAX_WAITING_EXPLANATIONS", bad)
        with pytest.raises(RuntimeSettingsError, match="DRIFTGATE_MAX_WAITING_EXPLANATIONS"):
            RuntimeSettings(repository=tmp_path)
    assert [running_explanations_for(threads) for threads in (1, 2, 4, 5)] == [1, 1, 2, 2]
