"""``POST /v1/feedback`` against the rows the gateway logged for a request.

The recorder remembers each recently logged request id with its number of rows, so a label
for a row the request did not have is refused (it would join no prediction), while a
label for an id this gateway never logged is stored and counted as unknown.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry

import gateway.feedback as feedback_module
from gateway import recording
from gateway.recording import Recorder, now_utc
from gateway.settings import GatewaySettings
from monitoring.prediction_log import FeedbackRecord, LogSettings, PredictionLogWriter, run_sql
from monitoring.sampling import SamplingPolicy
from tests.gateway.fakes import (
    REPLICAS,
    Answer,
    FakeRuntime,
    Gateway,
    eventually,
    gateway_factory,
)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway logging every request; it has answered the one-row request ``one`` and
    the three-row request ``three``."""
    runtime = FakeRuntime(models={"iris": ["1"]})
    settings = GatewaySettings.from_dict(
        {
            "replicas": [f"http://{r}" for r in REPLICAS],
            "auth": {"enabled": False},
            "health_check": {"interval_s": 0.05, "timeout_s": 0.5},
            "log": {"store": str(tmp_path / "store"), "flush_interval_s": 0.2},
        }
    )
    with gateway_factory(runtime) as start:
        gateway = start(settings)
        for request_id, fares, species in (
            ("one", 5, "setosa"),
            ("three", [5, 6, 7], ["setosa", "setosa", "virginica"]),
        ):
            runtime.behave(Answer({"species": species}))
            answer = gateway.client.post(
                "/v1/models/iris/eval", json={"fare": fares}, headers={"x-request-id": request_id}
            )
            assert answer.status_code == 200
        flush(gateway)
        yield gateway


def flush(gateway: Gateway) -> None:
    assert gateway.state.recorder is not None
    gateway.state.recorder.flush()


def post(gateway: Gateway, *labels: dict[str, Any]) -> httpx.Response:
    return gateway.client.post("/v1/feedback", json={"feedback": list(labels)})


def test_labels_for_rows_the_request_had_are_matched(gateway: Gateway) -> None:
    answer = post(
        gateway,
        {"request_id": "one", "label": 1},
        {"request_id": "one", "row": 0, "label": 1},
        {"request_id": "three", "row": 2, "label": 0},
        {"request_id": "never-logged", "row": 7, "label": 1},
    )

    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 4, "matched": 3, "unknown": 1}


def test_a_label_for_a_row_past_the_requests_last_is_refused_and_none_stored(
    gateway: Gateway, tmp_path: Path
) -> None:
    """Row 5 of a one-row request was answered `matched: 1`, and joined nothing."""
    answer = post(
        gateway,
        {"request_id": "three", "row": 1, "label": 0},
        {"request_id": "one", "row": 5, "label": 1},
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == (
        "label 1: request 'one' was logged with 1 row (row 0); row 5 labels no prediction"
    )
    flush(gateway)
    assert run_sql(tmp_path / "store", "select count(*) from feedback").rows == [(0,)]


def store_settings(tmp_path: Path, **log: Any) -> GatewaySettings:
    return GatewaySettings.from_dict(
        {
            "replicas": [f"http://{r}" for r in REPLICAS],
            "auth": {"enabled": False},
            "health_check": {"interval_s": 0.05, "timeout_s": 0.5},
            "log": {"store": str(tmp_path / "store"), **log},
        }
    )


def labels(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"request_id": f"{prefix}-{n}", "label": n % 2} for n in range(count)]


def stored(tmp_path: Path) -> list[tuple[Any, ...]]:
    return run_sql(tmp_path / "store", "select request_id from feedback order by 1").rows


def test_labels_sent_while_the_store_refuses_writes_are_a_503_until_it_takes_them_again(
    gateway: Gateway, tmp_path: Path
) -> None:
    """While writes failed (a mount gone, a full disk) the queue never filled: labels were
    answered 202, then dropped at their write."""
    store, volume = tmp_path / "store", tmp_path / "volume"
    assert gateway.state.recorder is not None
    writer = gateway.state.recorder.writer
    store.rename(volume)  # the store's mount drops ...
    store.mkdir()
    assert post(gateway, *labels("lost", 1)).status_code == 202  # nothing has failed yet
    flush(gateway)  # ... and their write fails

    refused = post(gateway, *labels("later", 2))

    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert re.fullmatch(
        r"the prediction log cannot write to its store \(its writes have failed for \d+ s\): "
        r"2 labels not accepted; send them again",
        refused.json()["error"],
    )
    assert gateway.metric("driftgate_feedback_total", outcome="refused") == 2
    store.rmdir()
    volume.rename(store)  # mounted again
    writer._outage.settle_s = 0.0  # in production, 30 s without a failed write
    assert post(gateway, *labels("again", 2)).status_code == 202
    flush(gateway)
    assert stored(tmp_path) == [("again-0",), ("again-1",)]


# --- a prediction log that cannot take the labels --------------------------------------------


@pytest.fixture
def slow_log(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose prediction log holds 5 rows and writes them only every 10 minutes: a
    writer that does not keep up with a burst of labels."""
    with gateway_factory(FakeRuntime(models={"iris": ["1"]})) as start:
        yield start(store_settings(tmp_path, max_queued_rows=5, flush_interval_s=600))


def test_labels_the_logs_full_queue_refuses_are_a_503_to_send_again_and_none_stored(
    slow_log: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """They were answered 202 and dropped: 190,000 of 400,000 labels in an SRE's burst."""
    assert post(slow_log, *labels("first", 3)).status_code == 202

    refused = post(slow_log, *labels("second", 3))  # 3 + 3 rows: more than the queue holds

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert refused.json() == {
        "error": "the prediction log's queue is full: 3 labels not accepted; send them again"
    }
    assert post(slow_log, *labels("third", 2)).status_code == 202  # room for 2 more
    assert slow_log.metric("driftgate_feedback_total", outcome="refused") == 3
    assert slow_log.metric("driftgate_feedback_total", outcome="unknown") == 5
    dropped = {"table": "feedback", "outcome": "dropped", "reason": "queue_full"}
    assert slow_log.metric("driftgate_log_records_total", **dropped) == 3
    # Logged by the writer (at most once a minute), not once more per refused post.
    assert "labels not accepted" not in caplog.text
    assert "prediction log: dropped 3 records" in caplog.text
    flush(slow_log)
    assert stored(tmp_path) == [
        ("first-0",),
        ("first-1",),
        ("first-2",),
        ("third-0",),
        ("third-1",),
    ]


def test_more_labels_than_the_logs_queue_holds_are_refused_saying_to_send_fewer(
    slow_log: Gateway, tmp_path: Path
) -> None:
    """Sent again, they would be refused again: a 413, not a 503 to retry."""
    refused = post(slow_log, *labels("many", 6))

    assert refused.status_code == 413
    assert refused.json()["error"] == (
        "6 labels are more than the prediction log's queue holds (log.max_queued_rows: 5): "
        "none accepted; send them in posts of at most 5"
    )
    assert slow_log.metric("driftgate_feedback_total", outcome="refused") == 6
    assert post(slow_log, *labels("fewer", 5)).status_code == 202
    flush(slow_log)
    assert len(stored(tmp_path)) == 5


def test_labels_sent_while_the_gateway_shuts_down_are_refused_saying_so(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    writer = PredictionLogWriter(tmp_path / "store", LogSettings(), registry)
    recorder = Recorder(writer, SamplingPolicy(), registry)
    recorder.close(timeout_s=5)
    label = FeedbackRecord(request_id="late", row=None, label=1, timestamp=now_utc())

    with pytest.raises(recording.FeedbackRefused) as refused:
        recorder.record_feedback([label])

    assert str(refused.value) == (
        "the prediction log is closed (the gateway is shutting down): 1 label not accepted; "
        "send them again"
    )
    assert registry.get_sample_value("driftgate_feedback_total", {"outcome": "refused"}) == 1
    assert registry.get_sample_value("driftgate_feedback_total", {"outcome": "unknown"}) is None


# --- large posts, off the event loop ---------------------------------------------------------


class Handled:
    """Wraps the feedback module's ``_parse_labels``: where each post was decoded (on the
    event loop or in a worker thread), how many at once; ``hold`` keeps those in worker
    threads waiting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on_loop: list[bool] = []
        self.inside = 0
        self.most_inside = 0
        self.hold: threading.Event | None = None
        self._lock = threading.Lock()
        self._parse = feedback_module._parse_labels
        monkeypatch.setattr(feedback_module, "_parse_labels", self)

    def __call__(self, body: bytes) -> Any:
        on_loop = _loop_running()
        with self._lock:
            self.on_loop.append(on_loop)
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            if self.hold is not None and not on_loop:  # never the event loop itself
                assert self.hold.wait(10)
            return self._parse(body)
        finally:
            with self._lock:
                self.inside -= 1


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a worker thread
        return False
    return True


BIG = [
    *labels("big", 998),
    {"request_id": "one", "label": 1},
    {"request_id": "three", "row": 2, "label": 0},
]


def test_a_large_post_is_handled_off_the_event_loop_with_the_same_answer(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 10,000-label post held the event loop (and every prediction) for up to 77 ms."""
    handled = Handled(monkeypatch)
    body = msgspec.json.encode({"feedback": BIG})
    assert len(body) > feedback_module.INLINE_BODY_BYTES

    off_loop = gateway.client.post("/v1/feedback", content=body)
    monkeypatch.setattr(feedback_module, "INLINE_BODY_BYTES", len(body))
    on_loop = gateway.client.post("/v1/feedback", content=body)
    small = post(gateway, {"request_id": "one", "label": 1})

    assert handled.on_loop == [False, True, True]
    assert off_loop.status_code == on_loop.status_code == 202
    assert off_loop.json() == on_loop.json() == {"accepted": 1000, "matched": 2, "unknown": 998}
    assert small.json() == {"accepted": 1, "matched": 1, "unknown": 0}
    flush(gateway)
    assert len(stored(tmp_path)) == 2 * 1000 + 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            msgspec.json.encode({"feedback": BIG})[:-2],
            "the feedback is not valid JSON: Input data was truncated",
        ),
        (
            msgspec.json.encode({"feedback": [*BIG, {"request_id": "x"}]}),
            "invalid feedback: Object missing required field `label` - at `$.feedback[1000]`",
        ),
        (
            msgspec.json.encode({"feedback": [*BIG, {"request_id": "one", "row": 5, "label": 1}]}),
            "label 1000: request 'one' was logged with 1 row (row 0); row 5 labels no prediction",
        ),
    ],
    ids=["not-json", "invalid-label", "labels-nothing"],
)
def test_a_large_post_refused_off_the_event_loop_names_the_problem_and_stores_nothing(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes, error: str
) -> None:
    handled = Handled(monkeypatch)

    answer = gateway.client.post("/v1/feedback", content=body)

    assert handled.on_loop == [False]
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)
    flush(gateway)
    assert stored(tmp_path) == []


def test_at_most_two_large_posts_take_worker_threads_at_once(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The others wait their turn, on the event loop: a burst cannot take every thread."""
    handled = Handled(monkeypatch)
    handled.hold = threading.Event()
    body = msgspec.json.encode({"feedback": BIG})
    with ThreadPoolExecutor(4) as pool:
        posts = [pool.submit(gateway.client.post, "/v1/feedback", content=body) for _ in range(4)]
        eventually(lambda: handled.inside == 2)
        time.sleep(0.2)  # room for a third to start, if one could
        assert handled.most_inside == 2
        handled.hold.set()
        answers = [posted.result(timeout=10) for posted in posts]

    assert [answer.status_code for answer in answers] == [202] * 4
    assert handled.most_inside == 2
    assert handled.on_loop == [False] * 4
    flush(gateway)
    assert len(stored(tmp_path)) == 4 * 1000
