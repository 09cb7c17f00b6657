"""The prediction log under a real ``driftgate up``: analysts read while it writes, and a
SIGTERM loses nothing.
Requests in Triton's binary tensor data extension are logged with their values.

One ``up`` (gateway + two replicas) records every request (sampling 1.0, the default of
the config ``up`` writes) into ``HOME/store``. An analyst process opens the catalog
read-only with plain DuckDB while the gateway runs; then the gateway is stopped with
SIGTERM right after a burst of requests, and every one of them is in the store.
"""

from __future__ import annotations

import json
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from monitoring.prediction_log import run_sql
from tests.e2e.gateway_system import is_runtime, local_system, wait_for

pytestmark = pytest.mark.e2e

PASSENGER = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}

ANALYST = textwrap.dedent("""
    import sys, time, duckdb
    path, want = sys.argv[1], int(sys.argv[2])
    deadline = time.monotonic() + 30
    while True:
        con = duckdb.connect(path, read_only=True)
        count = con.execute(
            "select count(*) from predictions where request_id like 'log-e2e-%'").fetchone()[0]
        con.close()
        if count >= want or time.monotonic() > deadline:
            print(count)
            break
        time.sleep(0.2)
""")


def test_analysts_read_while_it_runs_labels_join_and_sigterm_loses_nothing(
    demo_repository: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_repository, home / "models")
    store = home / "store"
    with (
        local_system(home, tmp_path / "up.log") as system,
        system.client("log-e2e", "predict", "feedback", "read:logs") as client,
    ):
        for i in range(30):
            answer = client.post(
                "/v1/models/titanic/eval", json=PASSENGER, headers={"x-request-id": f"log-e2e-{i}"}
            )
            assert answer.status_code == 200
        # An analyst's own process, plain DuckDB, read-only, while the gateway writes.
        seen = subprocess.run(
            [sys.executable, "-c", ANALYST, str(store / "driftgate.duckdb"), "30"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert int(seen.stdout.strip()) == 30, seen.stderr
        # Ground truth days later (here: now), joined by request id.
        labelled = client.post("/v1/feedback", json={"request_id": "log-e2e-0", "label": 0})
        assert labelled.json() == {"accepted": 1, "matched": 1, "unknown": 0}
        deadline = time.monotonic() + 20
        rows: list[list[object]] = []
        while not rows and time.monotonic() < deadline:
            rows = client.post(
                "/admin/sql",
                json={
                    "sql": (
                        "select request_id, label from predictions_labeled where label is not null"
                    )
                },
            ).json()["rows"]
            time.sleep(0.2)
        assert rows == [["log-e2e-0", 0]]
        for i in range(30, 80):
            client.post(
                "/v1/models/titanic/eval", json=PASSENGER, headers={"x-request-id": f"log-e2e-{i}"}
            )
        # SIGTERM straight after the burst: the queue drains and the writer flushes.
        system.process.process.send_signal(signal.SIGTERM)
        system.process.process.wait(timeout=60)
    rows_after = run_sql(
        store,
        "select count(distinct request_id), min(in_fare), "
        "count(*) filter (where out_probability is null) "
        "from predictions where request_id like 'log-e2e-%'",
    ).rows
    assert rows_after == [(80, 7, 0)]


def test_sigkill_loses_at_most_the_last_flush_interval(
    demo_repository: Path, tmp_path: Path
) -> None:
    """Requests answered more than ``flush_interval_s`` (1 s) plus the recorder's 50 ms
    drain before a ``kill -9`` of the whole system are all in the store; what is lost is
    measured, and lies within that window."""
    home = tmp_path / "home"
    shutil.copytree(demo_repository, home / "models")
    store = home / "store"
    answered: list[tuple[str, float]] = []
    with (
        local_system(home, tmp_path / "up.log") as system,
        system.client("kill-e2e", "predict") as client,
    ):
        deadline = time.monotonic() + 4
        i = 0
        while time.monotonic() < deadline:
            request_id = f"kill-e2e-{i}"
            answer = client.post(
                "/v1/models/titanic/eval", json=PASSENGER, headers={"x-request-id": request_id}
            )
            assert answer.status_code == 200
            answered.append((request_id, time.monotonic()))
            i += 1
        killed_at = time.monotonic()
        replicas = system.replica_pids()
        system.process.process.send_signal(signal.SIGKILL)
        system.process.process.wait(timeout=30)
        wait_for(  # the kernel's SIGTERM stops them (PR_SET_PDEATHSIG)
            lambda: not [pid for port, pid in replicas.items() if is_runtime(pid, port)],
            30,
            "the replicas of the killed `up` to exit",
        )
    stored = {
        row[0]
        for row in run_sql(
            store, "select request_id from predictions where request_id like 'kill-e2e-%'"
        ).rows
    }
    lost = [(rid, killed_at - at) for rid, at in answered if rid not in stored]
    bound_s = 1.0 + 0.05 + 0.25  # flush interval + drain interval + scheduling slack
    assert all(age <= bound_s for _, age in lost), lost
    assert len(stored) >= len(answered) - sum(1 for _, at in answered if killed_at - at <= bound_s)
    assert len(answered) > 50 and len(stored) > 0


def test_binary_tensor_data_is_logged_with_its_values(
    demo_repository: Path, tmp_path: Path
) -> None:
    """tritonclient's default wire format, in and out: the inputs sent binary were not
    logged, nor were binary outputs, and drift counted their features as missing. The body
    is built by hand: the JSON, then each binary input's bytes in order."""
    home = tmp_path / "home"
    shutil.copytree(demo_repository, home / "models")
    fare = np.array([[7.25], [np.nan]], dtype=np.float32)  # fare is nullable: NaN is missing
    texts = {"sex": [b"male", b"female"], "pclass": [b"3", b"1"]}
    chunks = {"fare": fare.astype("<f4").tobytes()}
    for name, values in texts.items():
        chunks[name] = b"".join(struct.pack("<I", len(value)) + value for value in values)
    inputs: list[dict[str, object]] = [
        {
            "name": name,
            "shape": [2, 1],
            "datatype": "FP32" if name == "fare" else "BYTES",
            "parameters": {"binary_data_size": len(chunk)},
        }
        for name, chunk in chunks.items()
    ]
    inputs.insert(1, {"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [22, 38.5]})
    inputs.append({"name": "embarked", "shape": [2, 1], "datatype": "BYTES", "data": ["Q", "S"]})
    head = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    with (
        local_system(home, tmp_path / "up.log", replicas=1) as system,
        system.client("log-e2e", "predict") as client,
    ):
        answer = client.post(
            "/v2/models/titanic/infer",
            content=head + b"".join(chunks.values()),
            headers={
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(len(head)),
                "x-request-id": "log-e2e-binary",
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/octet-stream"  # binary outputs
    # Out of the ``with``: ``up`` got SIGTERM, which loses nothing.
    rows = run_sql(
        home / "store",
        "select row, in_fare, in_age, in_sex, in_pclass, in_embarked, out_survived, "
        "out_probability, error from predictions where request_id = 'log-e2e-binary' "
        "order by row",
    ).rows
    assert [row[:6] for row in rows] == [
        (0, 7.25, 22, "male", "3", "Q"),
        (1, None, 38.5, "female", "1", "S"),
    ]
    for *_, survived, probability, error in rows:
        assert survived in (0, 1) and 0 <= probability <= 1 and error is None
