"""Requests through the gateway land in the prediction log; feedback and SQL read it back.

A real store (Parquet segments and a DuckDB catalog in tmp_path) behind a gateway whose
replicas are the fake runtime: what is asserted is what an analyst would query.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import gateway.feedback as feedback_module
from gateway import recording
from gateway.auth import AuthConfig, mint_token
from gateway.exchange import BINARY
from gateway.exchange_records import Exchange, exchange_records
from gateway.recording import Recorder, now_utc
from gateway.settings import GatewaySettings
from monitoring.prediction_log import (
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
    run_sql,
)
from monitoring.sampling import SamplingPolicy
from tests.gateway.fakes import (
    REPLICAS,
    Answer,
    Fail,
    FakeRuntime,
    Gateway,
    eventually,
    gateway_factory,
)

SECRET = "s" * 48


def settings(
    tmp_path: Path, sampling: float = 1.0, auth: bool = False, routes: dict[str, Any] | None = None
) -> GatewaySettings:
    return GatewaySettings.from_dict(
        {
            "replicas": [f"http://{r}" for r in REPLICAS],
            "auth": {"algorithm": "HS256", "secret": SECRET} if auth else {"enabled": False},
            "health_check": {"interval_s": 0.05, "timeout_s": 0.5},
            "routes": routes or {},
            "log": {
                "store": str(tmp_path / "store"),
                "flush_interval_s": 0.2,
                "sampling": {"default": sampling},
            },
        }
    )


@pytest.fixture
def runtime() -> FakeRuntime:
    fake = FakeRuntime(models={"iris": ["1", "2"]})
    fake.behave(Answer({"species": "setosa", "probability": 0.9}))
    return fake


@pytest.fixture
def start(runtime: FakeRuntime) -> Iterator[Any]:
    with gateway_factory(runtime) as factory:
        yield factory


def flush(gateway: Gateway) -> None:
    recorder = gateway.state.recorder
    assert recorder is not None
    recorder.flush()


def query(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    return run_sql(tmp_path / "store", sql).rows


def test_every_answered_request_becomes_a_typed_row(start, tmp_path: Path) -> None:
    gateway = start(settings(tmp_path))
    for fare in (7, 9, 11):
        answer = gateway.client.post(
            "/v1/models/iris/eval",
            json={"fare": fare, "sex": "male"},
            headers={"x-request-id": f"req-{fare}"},
        )
        assert answer.status_code == 200
    flush(gateway)
    rows = query(
        tmp_path,
        "select request_id, route, role, version, in_fare, in_sex, "
        "out_species, status from predictions order by in_fare",
    )
    assert rows == [
        ("req-7", "iris", "primary", "2", 7, "male", "setosa", 200),
        ("req-9", "iris", "primary", "2", 9, "male", "setosa", 200),
        ("req-11", "iris", "primary", "2", 11, "male", "setosa", 200),
    ]


def test_a_batch_request_is_one_row_per_instance(start, runtime, tmp_path: Path) -> None:
    gateway = start(settings(tmp_path))
    runtime.behave(Answer({"species": [["setosa"], ["virginica"]]}))
    gateway.client.post(
        "/v1/models/iris/eval", json={"fare": [[7], [9]]}, headers={"x-request-id": "batch"}
    )
    flush(gateway)
    assert query(tmp_path, "select row, in_fare, out_species from predictions order by row") == [
        (0, 7, "setosa"),
        (1, 9, "virginica"),
    ]


def test_sampling_keeps_errors_and_drops_by_request_id(start, runtime, tmp_path: Path) -> None:
    gateway = start(settings(tmp_path, sampling=0.0))
    gateway.client.post("/v1/models/iris/eval", json={"fare": 1})
    runtime.behave(Fail(400, "input 'fare': expected FP32"))
    gateway.client.post("/v1/models/iris/eval", json={"fare": "x"})
    flush(gateway)
    assert query(tmp_path, "select status, error from predictions") == [
        (400, "input 'fare': expected FP32")
    ]
    assert gateway.metric("driftgate_log_exchanges_total", route="iris", outcome="sampled_out") == 1


def test_refused_requests_cannot_add_a_column_per_made_up_input_name(
    start, runtime, tmp_path: Path
) -> None:
    gateway = start(settings(tmp_path))
    runtime.behave(Fail(400, "unknown input 'zz0'"))
    gateway.client.post(  # refused before any answer: no name is known yet
        "/v1/models/iris/eval", json={"fare": 1, "zz0": 0}, headers={"x-request-id": "early"}
    )
    runtime.behave(Answer({"species": "setosa"}))
    gateway.client.post("/v1/models/iris/eval", json={"fare": 7, "sex": "male"})
    runtime.behave(Fail(400, "unknown inputs 'zz1', 'zz2'"))
    gateway.client.post(
        "/v1/models/iris/eval",
        json={"fare": "x", "zz1": 1, "zz2": "y"},
        headers={"x-request-id": "late"},
    )
    flush(gateway)

    columns = [row[0] for row in query(tmp_path, "describe predictions")]
    assert sorted(c for c in columns if c.startswith("in_")) == [
        "in__unrecognised",
        "in_fare",
        "in_sex",
    ]
    rows = query(
        tmp_path,
        "select request_id, in_fare, in__unrecognised from predictions "
        "where status = 400 order by request_id",
    )
    assert rows == [
        ("early", None, '{"fare": 1, "zz0": 0}'),
        # fare is a name the model answered to, but with numbers: "x" would make it text
        ("late", None, '{"fare": "x", "zz1": 1, "zz2": "y"}'),
    ]


def test_made_up_model_names_are_logged_in_one_partition(start, tmp_path: Path) -> None:
    """Each unknown model's 404 made a predictions/model=<name>/ folder in the store."""
    gateway = start(settings(tmp_path))
    for index in range(3):
        gateway.client.post(f"/v1/models/nosuch{index}/eval", json={"x": 1})
    flush(gateway)
    folders = (tmp_path / "store" / "predictions").iterdir()
    partitions = sorted(p.name for p in folders if p.is_dir())
    assert partitions == ["model=__HIVE_DEFAULT_PARTITION__", "model=_unknown"]  # the skeleton's
    rows = query(tmp_path, "select route, status from predictions order by route")
    assert rows == [("nosuch0", 404), ("nosuch1", 404), ("nosuch2", 404)]


def test_primary_and_shadow_records_pair_up_by_request_id(start, tmp_path: Path) -> None:
    routes = {
        "iris": {
            "primary": {"model": "iris", "version": "2"},
            "shadow": [{"target": {"model": "iris", "version": "1"}}],
        }
    }
    gateway = start(settings(tmp_path, sampling=0.0, routes=routes))
    gateway.client.post("/v1/models/iris/eval", json={"fare": 3}, headers={"x-request-id": "pair"})
    import time  # the shadow answers in the background: poll until its record is there

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        flush(gateway)
        rows = query(
            tmp_path,
            "select role, version from predictions where request_id = 'pair' order by role",
        )
        if len(rows) == 2:
            break
        time.sleep(0.05)
    assert rows == [("primary", "2"), ("shadow", "1")]


def test_rows_carry_the_caller_s_token_subject_on_primary_and_shadow_records(
    start, runtime, tmp_path: Path
) -> None:
    """A split sticky by subject is analysed per caller: the log says who called, on the
    records of answers, of failures, and of the shadows mirrored for them."""
    shadow = {"target": {"model": "iris", "version": "1"}}
    routes = {"iris": {"primary": {"model": "iris", "version": "2"}, "shadow": [shadow]}}
    gateway = start(settings(tmp_path, auth=True, routes=routes))
    config = AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET})
    for subject in ("alice", "bob"):
        token = mint_token(config, subject, ["predict"], 600)
        headers = {"authorization": f"Bearer {token}", "x-request-id": f"{subject}-1"}
        answer = gateway.client.post("/v1/models/iris/eval", json={"fare": 3}, headers=headers)
        assert answer.status_code == 200
    runtime.behave(Fail(500), model="iris", version="2")
    token = mint_token(config, "carol", ["predict"], 600)
    headers = {"authorization": f"Bearer {token}", "x-request-id": "carol-1"}
    answer = gateway.client.post("/v1/models/iris/eval", json={"fare": 3}, headers=headers)
    assert answer.status_code == 500  # no target answered: the runtime's error, recorded

    def recorded() -> list[tuple[Any, ...]]:
        flush(gateway)
        return query(tmp_path, "select request_id, role, status, subject from predictions")

    eventually(lambda: len(recorded()) == 5, timeout_s=5)
    assert sorted(recorded()) == [
        ("alice-1", "primary", 200, "alice"),
        ("alice-1", "shadow", 200, "alice"),
        ("bob-1", "primary", 200, "bob"),
        ("bob-1", "shadow", 200, "bob"),
        ("carol-1", "primary", 500, "carol"),
    ]


def test_rows_have_no_subject_when_auth_is_off(start, tmp_path: Path) -> None:
    shadow = {"target": {"model": "iris", "version": "1"}}
    routes = {"iris": {"primary": {"model": "iris", "version": "2"}, "shadow": [shadow]}}
    gateway = start(settings(tmp_path, routes=routes))
    gateway.client.post("/v1/models/iris/eval", json={"fare": 3}, headers={"x-request-id": "anon"})

    def recorded() -> list[tuple[Any, ...]]:
        flush(gateway)
        return query(tmp_path, "select role, subject from predictions order by role")

    eventually(lambda: len(recorded()) == 2, timeout_s=5)
    assert recorded() == [("primary", None), ("shadow", None)]


def exchanges(gateway: Gateway) -> dict[str, float]:
    """Exchanges offered to the log, by outcome, over every route."""
    counts: dict[str, float] = {}
    for labels, value in gateway.samples("driftgate_log_exchanges_total"):
        if value:
            counts[labels["outcome"]] = counts.get(labels["outcome"], 0.0) + value
    return counts


def test_a_request_is_kept_as_shadowed_only_when_a_shadow_was_sent(
    start, runtime, tmp_path: Path
) -> None:
    """The answering record was always kept when the route had a shadow for the request,
    even when none was sent: dropped (too many in flight), or its target had answered as
    the fallback. Then there is no shadow record to pair with, and the log kept requests
    that sampling should have dropped."""
    shadow = {"target": {"model": "iris", "version": "1"}}
    routes = {
        "iris": {"primary": {"model": "iris", "version": "2"}, "shadow": [shadow]},
        "iris_fallback": {
            "primary": {"model": "iris", "version": "2"},
            "fallback": [shadow["target"]],
            "shadow": [shadow],
            "retries": 0,
        },
    }
    gateway = start(settings(tmp_path, sampling=0.0, routes=routes))
    gateway.state.shadows.max_in_flight = 0  # every shadow is dropped

    gateway.client.post("/v1/models/iris/eval", json={"fare": 3})
    assert exchanges(gateway) == {"sampled_out": 1}

    gateway.state.shadows.max_in_flight = 10
    runtime.behave(Fail(500), model="iris", version="2")
    answer = gateway.client.post("/v1/models/iris_fallback/eval", json={"fare": 3})
    assert answer.headers["X-Driftgate-Role"] == "fallback"
    assert exchanges(gateway) == {"sampled_out": 2}  # version 1 answered: nothing mirrored

    runtime.behave(Answer({"species": "setosa"}), model="iris", version="2")
    gateway.client.post("/v1/models/iris/eval", json={"fare": 3})
    eventually(lambda: exchanges(gateway) == {"sampled_out": 2, "queued": 2})  # it and its shadow


def test_feedback_joins_predictions_by_request_id(start, tmp_path: Path) -> None:
    gateway = start(settings(tmp_path, auth=True))
    config = AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET})
    caller = {"authorization": f"Bearer {mint_token(config, 'app', ['predict'], 600)}"}
    labeller = {"authorization": f"Bearer {mint_token(config, 'labeller', ['feedback'], 600)}"}
    gateway.client.post(
        "/v1/models/iris/eval", json={"fare": 5}, headers={**caller, "x-request-id": "known"}
    )
    flush(gateway)
    answer = gateway.client.post(
        "/v1/feedback",
        headers=labeller,
        json={
            "feedback": [
                {"request_id": "known", "label": "setosa"},
                {"request_id": "never-seen", "label": "x"},
            ]
        },
    )
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 2, "matched": 1, "unknown": 1}
    flush(gateway)
    assert query(tmp_path, "select request_id, label from predictions_labeled") == [
        ("known", "setosa")
    ]
    assert len(query(tmp_path, "select * from feedback")) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b'{"request_id": "", "label": 1}', "invalid feedback"),
        (b'{"request_id": "a"}', "invalid feedback"),
        (b'{"request_id": "a", "label": [1, 2]}', "invalid feedback"),
        (b'{"feedback": []}', "invalid feedback"),
        # Past int32, the store's row column: accepted, it made the writer drop the flush.
        (b'{"request_id": "a", "label": 1, "row": 2147483648}', "Expected `int` <= 2147483647"),
        (b'{"request_id": "a", "label": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    ],
)
def test_bad_feedback_is_refused_naming_the_problem(
    start, tmp_path: Path, body: bytes, message: str
) -> None:
    gateway = start(settings(tmp_path))
    answer = gateway.client.post(
        "/v1/feedback", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_made_up_model_names_add_no_log_exchange_series(start, tmp_path: Path) -> None:
    gateway = start(settings(tmp_path))
    for index in range(5):  # the runtime answers 404; errors are always logged
        gateway.client.post(f"/v1/models/nosuch{index}/eval", json={"fare": 5})
    gateway.client.post("/v1/models/iris/eval", json={"fare": 5})

    routes = {labels["route"] for labels, _ in gateway.samples("driftgate_log_exchanges_total")}
    assert routes == {"_unknown", "iris"}
    assert gateway.metric("driftgate_log_exchanges_total", route="_unknown") == 5


def test_admin_sql_answers_503_when_every_turn_stays_taken(
    start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow queries queued every later one behind them, a `select 1` for 27 s."""
    monkeypatch.setattr(feedback_module, "SQL_WAIT_S", 0.05)
    gateway = start(settings(tmp_path))
    gateway.state.sql_turns = asyncio.Semaphore(0)  # every turn taken by a slow query
    answer = gateway.client.post("/admin/sql", json={"sql": "select 1"})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "10"
    assert "queries are running" in answer.json()["error"]


def test_admin_sql_reads_the_log_and_refuses_writes(start, tmp_path: Path) -> None:
    gateway = start(settings(tmp_path, auth=True))
    config = AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET})
    analyst = {"authorization": f"Bearer {mint_token(config, 'ana', ['read:logs'], 600)}"}
    caller = {"authorization": f"Bearer {mint_token(config, 'app', ['predict'], 600)}"}
    gateway.client.post("/v1/models/iris/eval", json={"fare": 5}, headers=caller)
    flush(gateway)
    answer = gateway.client.post(
        "/admin/sql", headers=analyst, json={"sql": "select count(*) as n from predictions"}
    )
    assert answer.json() == {"columns": ["n"], "rows": [[1]], "truncated": False}
    for statement in ("drop view predictions", "select * from read_csv('/etc/passwd')"):
        refused = gateway.client.post("/admin/sql", headers=analyst, json={"sql": statement})
        assert refused.status_code == 400, refused.text
    assert (
        gateway.client.post("/admin/sql", headers=caller, json={"sql": "select 1"}).status_code
        == 403
    )


def test_admin_sql_answers_nan_and_infinity_as_null_and_as_text_when_cast(
    start, tmp_path: Path
) -> None:
    """docs/prediction-log.md: JSON has no NaN, so they read like NULL unless cast."""
    gateway = start(settings(tmp_path))
    query = "select v, v::VARCHAR as text from (values ('NaN'::DOUBLE), ('inf'), (NULL)) t(v)"
    answer = gateway.client.post("/admin/sql", json={"sql": query})
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [[None, "nan"], [None, "inf"], [None, None]]


def test_feedback_takes_either_scope_and_a_refusal_names_feedback(start, tmp_path: Path) -> None:
    gateway = start(settings(tmp_path, auth=True))
    config = AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET})
    label = {"request_id": "r1", "label": 1}
    for scopes, status in ((["feedback"], 202), (["predict"], 202), (["admin"], 403)):
        token = mint_token(config, "labeller", scopes, 600)
        answer = gateway.client.post(
            "/v1/feedback", json=label, headers={"authorization": f"Bearer {token}"}
        )
        assert answer.status_code == status, scopes
    assert "lacks scope 'feedback'" in answer.json()["error"]


# --- what the recorder loses is counted ------------------------------------------------------


def exchange(request_id: str, body: bytes = b'{"fare": 7}', dialect: str = "eval") -> Exchange:
    return Exchange(
        request_id=request_id,
        timestamp=now_utc(),
        route="iris",
        arm="",
        role="primary",
        dialect=dialect,
        model="iris",
        version="1",
        replica="http://r1",
        status=200,
        latency_s=0.01,
        trace_id=None,
        request_body=body,
        request_headers={"content-type": "application/json"},
        response_body=b'{"outputs": {"species": "setosa"}}',
        response_headers={},
    )


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[tuple[Recorder, CollectorRegistry]]:
    registry = CollectorRegistry()
    writer = PredictionLogWriter(tmp_path / "store", LogSettings(flush_interval_s=0.05), registry)
    made = Recorder(writer, SamplingPolicy(), registry)
    yield made, registry
    made.close(timeout_s=5)


def exchange_counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """driftgate_log_exchanges_total by (outcome, reason), over every route."""
    counts: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "driftgate_log_exchanges_total" and sample.value:
                key = (sample.labels["outcome"], sample.labels.get("reason", ""))
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


@pytest.mark.parametrize(
    ("dialect", "body"),
    [
        ("v2", b'{"inputs": [{"shape": [1, 1], "datatype": "FP32", "data": [1]}]}'),  # no name
        ("eval", b'{"fare": ' + b"[" * 5000 + b"]" * 5000 + b"}"),  # msgspec recurses
    ],
    ids=["tensor-without-a-name", "nested-too-deeply"],
)
def test_a_request_body_of_an_unexpected_shape_is_recorded_with_a_note(
    dialect: str, body: bytes
) -> None:
    """Such bodies raised out of the parser, so their exchange was never recorded (and
    its loss never counted), though a body that cannot be read is meant to give a note."""
    (row,) = exchange_records(exchange("odd", body, dialect))
    assert row.inputs == {}
    assert row.error in (
        "request body has an unexpected shape",
        "request body is nested too deeply",
    )

    answer = replace(exchange("odd", dialect=dialect), response_body=body)
    (row,) = exchange_records(answer)
    assert row.outputs == {}


@pytest.mark.parametrize(
    ("dialect", "body", "answer"),
    [
        ("eval", b'{"features": []}', b'{"outputs": {"species": []}}'),
        ("tfserving", b'{"instances": []}', b'{"predictions": []}'),
    ],
    ids=["eval", "tfserving"],
)
def test_an_answered_batch_of_no_rows_logs_no_row(dialect: str, body: bytes, answer: bytes) -> None:
    """Its one row, all NULL and without error, counted as missing values in drift: a
    client's empty batches could raise a missing-share alert."""
    sent = replace(exchange("empty", body, dialect), response_body=answer)
    assert exchange_records(sent) == []
    refused = replace(sent, status=400, response_body=b'{"error": "no"}')
    assert [row.error for row in exchange_records(refused)] == ["no"]  # refusals stay


def test_an_exchange_of_binary_tensors_is_recorded_with_its_values() -> None:
    """Its row had outputs but no inputs (the note 'binary tensor data is not recorded'),
    and a binary answer had no outputs: drift counted the features as missing."""
    head = (
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",'
        b' "parameters": {"binary_data_size": 16}}]}'
    )
    body = head + struct.pack("<4f", 5.5, 3.5, 1.25, 0.25)
    answer_head = (
        b'{"outputs": [{"name": "y", "shape": [1], "datatype": "INT64",'
        b' "parameters": {"binary_data_size": 8}}]}'
    )
    sent = replace(
        exchange("bin", body, "v2"),
        request_headers={"inference-header-content-length": str(len(head))},
        response_body=answer_head + struct.pack("<q", 2),
        response_headers={"inference-header-content-length": str(len(answer_head))},
    )
    (row,) = exchange_records(sent)
    assert row.status == 200 and row.error is None
    assert (row.inputs, row.outputs) == ({"x": [5.5, 3.5, 1.25, 0.25]}, {"y": 2})
    # Binary data that does not add up (the runtime refuses it) says why in error.
    short = replace(sent, request_body=body[:-4])
    (row,) = exchange_records(short)
    assert row.error == (
        f"{BINARY}: input 'x': binary_data_size is 16 bytes but only 12 bytes of binary data remain"
    )
    assert not row.inputs and row.outputs == {"y": 2}
    refused = replace(short, status=400, response_body=b'{"error": "no"}', response_headers={})
    assert [row.error for row in exchange_records(refused)] == ["no"]


def test_an_exchange_the_recorder_cannot_parse_is_counted_and_logged_once_a_minute(
    recorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Such an exchange was logged with a traceback each time and never counted: the
    recorder stage of DriftgatePredictionLogDropping could not see it."""
    made, registry = recorder
    parse = exchange_records

    def parser_with_a_bug(exchange: Exchange, *args: Any) -> list[PredictionRecord]:
        if exchange.request_id.startswith("bad"):
            raise ValueError("a bug in a parser")
        return parse(exchange, *args)

    monkeypatch.setattr(recording, "exchange_records", parser_with_a_bug)
    made.start()
    for request_id in ("good", "bad-1", "bad-2", "bad-3"):
        made.record("iris", exchange(request_id))
    made.flush()

    assert exchange_counts(registry) == {("queued", ""): 4, ("dropped", "parse_failed"): 3}
    written = {"table": "predictions", "outcome": "written", "reason": ""}
    assert registry.get_sample_value("driftgate_log_records_total", written) == 1
    logged = [r for r in caplog.records if "parse_failed" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "bad-1" in logged[0].getMessage() and logged[0].exc_info is not None
    caplog.clear()
    made.close(timeout_s=5)
    # What was counted but not logged since is said once, when the recorder closes.
    (summary,) = [r.getMessage() for r in caplog.records if "parse_failed" in r.getMessage()]
    assert "2 " in summary


def test_exchanges_still_waiting_when_close_gives_up_are_counted_as_dropped(
    recorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``close`` waits ``timeout_s`` for the recorder thread, then stopped the writer:
    exchanges still in the recorder's queue were lost without a count or a word."""
    made, registry = recorder
    stuck, release = threading.Event(), threading.Event()
    parse = exchange_records

    def slow_parser(exchange: Exchange, *args: Any) -> list[PredictionRecord]:
        if exchange.request_id == "slow":
            stuck.set()
            release.wait(10)
        return parse(exchange, *args)

    monkeypatch.setattr(recording, "exchange_records", slow_parser)
    made.start()
    made.record("iris", exchange("slow"))
    assert stuck.wait(5)  # the recorder thread holds "slow" and has not taken the rest
    for index in range(4):
        made.record("iris", exchange(f"waiting-{index}"))

    made.close(timeout_s=0.2)

    assert exchange_counts(registry) == {("queued", ""): 5, ("dropped", "shutdown"): 4}
    assert any("4 " in r.getMessage() and "shutdown" in r.getMessage() for r in caplog.records)
    release.set()


def test_an_exchange_offered_after_close_is_counted_as_dropped(recorder) -> None:
    """The recorder took it into a queue nobody drains any more, counted as queued."""
    made, registry = recorder
    made.start()
    made.close(timeout_s=5)

    made.record("iris", exchange("late"))

    assert exchange_counts(registry) == {("dropped", "closed"): 1}


def test_a_full_recorder_queue_counts_its_drops_as_queue_full(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    writer = PredictionLogWriter(tmp_path / "store", LogSettings(), CollectorRegistry())
    made = Recorder(writer, SamplingPolicy(), registry, max_queue=2)  # not started: nobody drains
    for index in range(5):
        made.record("iris", exchange(f"r{index}"))
    assert exchange_counts(registry) == {("queued", ""): 2, ("dropped", "queue_full"): 3}
    made.close(timeout_s=5)
    assert exchange_counts(registry) == {("queued", ""): 2, ("dropped", "queue_full"): 3}


# --- what a refused request may do to the store's columns ------------------------------------


def refused(request_id: str, body: bytes, status: int = 400) -> Exchange:
    error = b'{"error": "input \'fare\': expected a number"}'
    return replace(exchange(request_id, body), status=status, response_body=error)


def test_a_refused_request_s_values_never_change_a_column_s_type(recorder, tmp_path: Path) -> None:
    """One client sending "fare": "seven" (answered 400) made in_fare VARCHAR in the whole
    view, and every analyst's avg(in_fare) failed; the first request ever logged for the
    model being such a one must not establish VARCHAR either."""
    made, _ = recorder
    made.start()
    for sent in (
        refused("first", b'{"fare": "seven", "sex": "male"}'),  # nothing known yet
        exchange("ok", b'{"fare": 7.25, "sex": "male"}'),
        refused("text", b'{"fare": "seven", "sex": "female"}'),
        refused("list", b'{"fare": [[9, 10]], "sex": 3}'),
        refused("failed", b'{"fare": "eight", "sex": "male"}', status=503),
        refused("fits", b'{"fare": 9, "sex": null}'),
    ):
        made.record("iris", sent)
        made.flush()  # one segment each, as a quiet gateway writes them

    store = tmp_path / "store"
    types = dict(run_sql(store, "select column_name, column_type from (describe predictions)").rows)
    assert (types["in_fare"], types["in_sex"]) == ("DOUBLE", "VARCHAR")
    assert "in_fare__list" not in types
    assert run_sql(store, "select avg(in_fare) from predictions").rows == [(8.125,)]
    rows = run_sql(
        store,
        "select request_id, in_fare, in_sex, json_extract(in__unrecognised, '$.fare')::VARCHAR "
        "from predictions order by timestamp",
    ).rows
    assert rows == [
        ("first", None, None, '"seven"'),
        ("ok", 7.25, "male", None),
        ("text", None, "female", '"seven"'),
        ("list", None, None, "[9,10]"),
        ("failed", None, "male", '"eight"'),
        ("fits", 9.0, None, None),
    ]
    sex = "select in__unrecognised from predictions where request_id = 'list'"
    assert run_sql(store, sex).rows == [('{"fare": [9, 10], "sex": 3}',)]


def test_a_vector_input_s_single_instance_is_one_row_of_lists(recorder, tmp_path: Path) -> None:
    """iris's describe example {"features": [5.1, 3.5, 1.4, 0.2]} was logged as four rows of
    scalars beside three rows of probabilities; the runtime's X-Driftgate-Eval-Form header
    says it read one instance."""
    made, _ = recorder
    made.start()
    instance = replace(
        exchange("iris-1", b'{"features": [5.1, 3.5, 1.4, 0.2]}'),
        response_body=b'{"outputs": {"probabilities": [0.9, 0.07, 0.03], "label": 0}}',
        response_headers={"x-driftgate-eval-form": "instance"},
    )
    made.record("iris", instance)
    made.flush()
    rows = run_sql(
        tmp_path / "store", "select row, in_features, out_probabilities, out_label from predictions"
    ).rows
    assert rows == [(0, [5.1, 3.5, 1.4, 0.2], [0.9, 0.07, 0.03], 0)]


def test_inputs_and_outputs_that_do_not_pair_up_are_one_row_and_counted(
    recorder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the header (an older runtime) the same body is guessed to be columns: four
    input rows against three output rows were padded with NULL and misaligned, and the
    scalar rows made in_features a scalar column in the shape registry."""
    made, registry = recorder
    made.start()
    for request_id in ("guessed-1", "guessed-2"):
        made.record(
            "iris",
            replace(
                exchange(request_id, b'{"features": [5.1, 3.5, 1.4, 0.2]}'),
                response_body=b'{"outputs": {"probabilities": [0.9, 0.07, 0.03]}}',
            ),
        )
    made.flush()
    rows = run_sql(
        tmp_path / "store",
        "select request_id, row, in__unrecognised, out__unrecognised, error from predictions "
        "order by request_id",
    ).rows
    whole = ('{"features": [5.1, 3.5, 1.4, 0.2]}', '{"probabilities": [0.9, 0.07, 0.03]}')
    assert [row[:4] for row in rows] == [("guessed-1", 0, *whole), ("guessed-2", 0, *whole)]
    assert all("could not be told apart" in row[4] for row in rows)
    # Whole tensors are no instance's: they give no column a shape (in_features stays free).
    columns = [row[0] for row in run_sql(tmp_path / "store", "describe predictions").rows]
    assert not [c for c in columns if c.startswith(("in_features", "out_probabilities"))]
    assert registry.get_sample_value("driftgate_log_misread_total", {"model": "iris"}) == 2
    warned = [r for r in caplog.records if "could not be split" in r.getMessage()]
    assert len(warned) == 1


def test_a_refused_body_of_ragged_columns_is_kept_whole_once() -> None:
    sent = refused("ragged", b'{"fare": [[7], [9], [11]], "sex": [["male"], ["female"]]}')
    (row,) = exchange_records(sent, known_inputs={"fare": {"number"}, "sex": {"string"}})
    assert row.inputs == {"_unrecognised": {"fare": [7, 9, 11], "sex": ["male", "female"]}}
    assert row.error == "input 'fare': expected a number"  # the runtime's, not the note
