"""``driftgate routes``: an ML engineer reads and changes a running gateway's routes.

The gateway is real (``create_app`` served by uvicorn on a loopback port, in front of fake
replicas); the command line runs in-process like a user's ``driftgate`` would. A change
made on an older read of the route is refused, never written over the newer one; every
failure is one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from driftgate.admin_client import AdminClient, Route
from driftgate.cli import main
from gateway.app import create_app
from gateway.auth import AuthConfig, mint_token
from tests.cli_logging import root_logging  # noqa: F401  (an autouse fixture)
from tests.gateway.fakes import SECRET, FakeRuntime, gateway_settings

AUTH = {"algorithm": "HS256", "secret": SECRET}
AB_TEST = {
    "split": {
        "arms": [
            {"name": "stable", "target": {"model": "titanic", "version": "1"}, "weight": 90},
            {"name": "canary", "target": {"model": "titanic", "version": "2"}, "weight": 10},
        ]
    },
    "fallback": [{"model": "titanic_pmml"}],
}
ROUTES = {"titanic": AB_TEST, "iris": {"primary": {"model": "iris", "version": "2"}}}


#: Stands for a token with the predict scope only, minted when the test runs.
PREDICT_ONLY = "<a token with scope predict>"


def token(*scopes: str) -> str:
    return mint_token(AuthConfig.from_dict(AUTH), "ops", scopes, 600)


@dataclass
class Running:
    url: str
    admin: httpx.Client  # what a colleague does meanwhile, through the same API

    def policy(self, name: str = "titanic") -> dict[str, Any]:
        answer = self.admin.get(f"/admin/routes/{name}")
        answer.raise_for_status()
        policy: dict[str, Any] = answer.json()["policy"]
        return policy


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    """A gateway on a free loopback port; DRIFTGATE_GATEWAY_URL and DRIFTGATE_TOKEN (an
    admin token) point the command line at it."""
    runtime = FakeRuntime()
    settings = gateway_settings(
        ROUTES, replicas=runtime.replicas, auth=AUTH, routes_dir=tmp_path / "routes"
    )
    app = create_app(settings, transport=runtime.transport())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the gateway never started"
            time.sleep(0.02)
        monkeypatch.setenv("DRIFTGATE_GATEWAY_URL", url)
        monkeypatch.setenv("DRIFTGATE_TOKEN", token("admin"))
        headers = {"authorization": f"Bearer {token('admin')}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as admin:
            yield Running(url, admin)
    finally:
        server.should_exit = True
        thread.join(20)
        listener.close()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["routes", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def one_line(err: str) -> str:
    assert len(err.splitlines()) == 1, err
    assert err.startswith("driftgate: ")
    return err.strip()


# --- reading --------------------------------------------------------------------------------


def test_list_shows_who_answers_each_route(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["list"], capsys)[:2] == (
        0,
        "iris     iris v2\n"
        "titanic  stable 90 -> titanic v1, canary 10 -> titanic v2; fallback titanic_pmml\n",
    )


def test_list_shows_what_each_route_mirrors_and_falls_back_to(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shadows with their percent, then the fallback chain in order: what `routes get`
    spells out, in one line."""
    iris = {
        "primary": {"model": "iris", "version": "2"},
        "shadow": [
            {"target": {"model": "iris", "version": "1"}},
            {"target": {"model": "iris_onnx"}, "percent": 2.5},
        ],
        "fallback": [{"model": "iris_onnx"}, {"model": "iris", "version": "1"}],
    }
    gateway.admin.put("/admin/routes/iris", json=iris).raise_for_status()

    status, out, _ = run(["list"], capsys)

    assert status == 0
    assert out.splitlines()[0] == (
        "iris     iris v2; shadow iris v1 100%, iris_onnx 2.5%; fallback iris_onnx, iris v1"
    )


@pytest.mark.parametrize("form", ["json", "yaml"])
def test_list_prints_each_policy_with_the_etag_to_put_it_back_with(
    gateway: Running, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    status, out, _ = run(["list", "--format", form], capsys)

    assert status == 0
    listed = yaml.safe_load(out)  # JSON is YAML too
    iris = gateway.admin.get("/admin/routes/iris")
    assert listed["iris"] == {"etag": iris.headers["etag"], "policy": iris.json()["policy"]}
    assert listed["titanic"]["policy"] == gateway.policy()
    put = gateway.admin.put(
        "/admin/routes/titanic",
        json={**listed["titanic"]["policy"], "retries": 3},
        headers={"if-match": listed["titanic"]["etag"]},
    )
    assert put.status_code == 200, put.text


def test_list_reads_a_gateway_from_before_listed_etags() -> None:
    """An older gateway lists ``{"<route>": <policy>}``: the policies show, without ETags."""
    policy = {"primary": {"model": "iris", "version": "2"}}

    def older(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"iris": policy})

    with AdminClient("http://gateway", None, transport=httpx.MockTransport(older)) as client:
        routes = client.routes()

    assert (routes["iris"].policy, routes["iris"].etag) == (policy, None)


def test_get_prints_the_policy_as_yaml_below_its_etag(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(["get", "titanic"], capsys)

    assert status == 0
    etag = gateway.admin.get("/admin/routes/titanic").headers["etag"]
    assert out.splitlines()[0] == (f"# route titanic, etag {etag}: routes set sends it as If-Match")
    assert yaml.safe_load(out) == gateway.policy()


def test_get_prints_json_on_request(gateway: Running, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["get", "titanic", "--format", "json"], capsys)

    assert (status, json.loads(out)) == (0, gateway.policy())


# --- set ------------------------------------------------------------------------------------


def test_set_replaces_the_route_with_a_policy_edited_from_get(
    gateway: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = tmp_path / "titanic.yaml"
    policy_file.write_text(run(["get", "titanic"], capsys)[1].replace("retries: 1", "retries: 3"))

    status, out, _ = run(["set", "titanic", "--file", str(policy_file)], capsys)

    assert (status, out) == (
        0,
        "titanic: replaced; stable 90 -> titanic v1, canary 10 -> titanic v2; "
        "fallback titanic_pmml\n",
    )
    assert gateway.policy()["retries"] == 3


def test_set_refuses_a_policy_read_before_a_colleagues_change(
    gateway: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = tmp_path / "titanic.yaml"
    policy_file.write_text(run(["get", "titanic"], capsys)[1].replace("retries: 1", "retries: 3"))
    colleague = {**gateway.policy(), "timeout_s": 5.0}
    gateway.admin.put("/admin/routes/titanic", json=colleague).raise_for_status()
    now = gateway.admin.get("/admin/routes/titanic").headers["etag"]

    status, _, err = run(["set", "titanic", "--file", str(policy_file)], capsys)

    assert status == 1
    assert one_line(err) == (
        f"driftgate: route titanic changed since {policy_file} was read (its ETag is now "
        f"{now}); nothing changed: run driftgate routes get titanic, make the change on what "
        "it prints, and set that (or --force to overwrite)"
    )
    assert gateway.policy() == colleague


def test_set_force_overwrites_whatever_is_there(
    gateway: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = tmp_path / "titanic.yaml"
    policy_file.write_text(run(["get", "titanic"], capsys)[1].replace("retries: 1", "retries: 3"))
    gateway.admin.put("/admin/routes/titanic", json={"retries": 2}).raise_for_status()

    assert run(["set", "titanic", "--file", str(policy_file), "--force"], capsys)[0] == 0
    assert gateway.policy()["retries"] == 3


def test_set_of_a_hand_written_policy_creates_or_replaces_the_route(
    gateway: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = tmp_path / "digits.json"
    policy_file.write_text('{"primary": {"model": "digits", "version": "1"}}')

    status, out, _ = run(["set", "digits", "--file", str(policy_file)], capsys)

    assert (status, out) == (0, "digits: created (it was not configured: a new route); digits v1\n")
    assert gateway.policy("digits")["primary"] == {"model": "digits", "version": "1"}

    policy_file.write_text('{"primary": {"model": "digits", "version": "2"}}')
    assert run(["set", "digits", "--file", str(policy_file)], capsys)[1] == (
        "digits: replaced; digits v2\n"
    )


def test_set_refuses_the_policy_get_printed_for_another_route(
    gateway: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A route name mistyped on the command line would otherwise become a new route."""
    policy_file = tmp_path / "titanic.yaml"
    policy_file.write_text(run(["get", "titanic"], capsys)[1].replace("weight: 10", "weight: 20"))

    status, out, err = run(["set", "titanc", "--file", str(policy_file)], capsys)

    assert (status, out) == (2, "")
    assert one_line(err) == (
        f"driftgate: --file {policy_file} holds the policy of route titanic (its first line "
        "says so), not of titanc: set titanic, or remove that line to give titanc this policy"
    )
    assert gateway.admin.get("/admin/routes/titanc").json()["configured"] is False


def test_set_names_the_field_the_gateway_refused(
    gateway: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = tmp_path / "titanic.yaml"
    policy_file.write_text("retries: two\n")

    status, _, err = run(["set", "titanic", "--file", str(policy_file)], capsys)

    assert status == 1
    assert one_line(err) == (
        "driftgate: PUT /admin/routes/titanic refused (400): invalid route policy, nothing "
        "changed: routes.titanic.retries: expected an integer, got 'two'"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it: [Errno 2] No such file or directory"),
        ("primary: [unclosed\n", "not YAML or JSON: "),
        ("- a list\n", "expected a route policy (a mapping such as routes get prints)"),
        ("retries: 1\nretries: 2\n", "line 2: key 'retries' is given twice"),
    ],
    ids=["missing", "not-yaml", "not-a-mapping", "a-key-twice"],
)
def test_set_names_a_file_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    policy_file = tmp_path / "policy.yaml"
    if content is not None:
        policy_file.write_text(content)

    status, _, err = run(["set", "titanic", "--file", str(policy_file)], capsys)

    assert status == 2
    assert one_line(err).startswith(f"driftgate: --file {policy_file}: {message}")


# --- weights --------------------------------------------------------------------------------


def test_weights_changes_only_the_weights_and_says_which(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    before = gateway.policy()

    status, out, _ = run(["weights", "titanic", "stable=50", "canary=50"], capsys)

    assert (status, out) == (0, "titanic: stable 90 -> 50, canary 10 -> 50\n")
    after = gateway.policy()
    assert [arm["weight"] for arm in after["split"]["arms"]] == [50, 50]
    for arm in before["split"]["arms"]:
        arm["weight"] = 50
    assert after == before


def test_weights_drain_an_arm_to_0_but_not_every_arm(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["weights", "titanic", "stable=0"], capsys)[:2] == (0, "titanic: stable 90 -> 0\n")
    assert [arm["weight"] for arm in gateway.policy()["split"]["arms"]] == [0, 10]

    status, _, err = run(["weights", "titanic", "canary=0"], capsys)

    assert status == 1
    assert one_line(err).endswith(
        "routes.titanic.split.arms: every arm has weight 0, so none could answer: give at "
        "least one a weight > 0"
    )


def test_weights_already_in_place_change_nothing(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["weights", "titanic", "stable=90"], capsys)[:2] == (
        0,
        "titanic: weights unchanged (stable 90 -> titanic v1, canary 10 -> titanic v2)\n",
    )


def test_weights_apply_to_the_new_policy_when_the_route_changed_meanwhile(
    gateway: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague's change lands between the command's GET and its PUT: the PUT is refused
    (412), and the weights are applied to the colleague's policy, read again."""
    colleague = {**gateway.policy(), "retries": 3}
    changes_after_reads(monkeypatch, gateway, [colleague])

    status, out, err = run(["weights", "titanic", "canary=50"], capsys)

    assert (status, out) == (0, "titanic: canary 10 -> 50\n")
    assert "route titanic changed while this ran; reading it again" in one_line(err)
    after = gateway.policy()
    assert after["retries"] == 3  # the colleague's change stays
    assert [arm["weight"] for arm in after["split"]["arms"]] == [90, 50]


def test_weights_give_up_when_the_route_changes_again(
    gateway: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = [{**gateway.policy(), "retries": retries} for retries in (2, 3)]
    changes_after_reads(monkeypatch, gateway, changes)

    status, _, err = run(["weights", "titanic", "canary=50"], capsys)

    assert status == 1
    assert err.splitlines()[-1].startswith("driftgate: route titanic changed again while this ran")
    assert err.splitlines()[-1].endswith("nothing changed: run this once more")
    assert gateway.policy() == changes[-1]


def changes_after_reads(
    monkeypatch: pytest.MonkeyPatch, gateway: Running, policies: list[dict[str, Any]]
) -> None:
    """After each of the command's next reads of the route, a colleague PUTs a policy."""
    read = AdminClient.get
    pending = list(policies)

    def read_then_change(client: AdminClient, name: str) -> Any:
        route = read(client, name)
        if pending:
            gateway.admin.put(f"/admin/routes/{name}", json=pending.pop(0)).raise_for_status()
        return route

    monkeypatch.setattr(AdminClient, "get", read_then_change)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["weights", "titanic", "shadow=5"], "route titanic has no arm 'shadow' (its arms: "),
        (["weights", "iris", "stable=5"], "route iris has no split (A/B arms) to weigh"),
        (
            ["weights", "titanc", "stable=5"],
            "route titanc is not configured, so it has no arms to weigh "
            "(driftgate routes list shows the routes)",
        ),
        (["weights", "titanic", "stable=5", "stable=6"], "name each arm once"),
    ],
)
def test_weights_name_what_they_cannot_change(
    gateway: Running, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = run(argv, capsys)

    assert status == 2
    assert one_line(err).startswith(f"driftgate: {message}")


def test_weights_the_gateway_refuses_are_named(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(["weights", "titanic", "canary=2000000"], capsys)

    assert status == 1
    assert one_line(err).endswith(
        "routes.titanic.split.arms[1].weight: must be <= 1000000, got 2000000"
    )


def test_a_weight_that_is_not_a_whole_number_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["routes", "weights", "titanic", "canary=half"])

    assert exited.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith("expected ARM=WEIGHT with a whole number, e.g. stable=90, got 'canary=half'")
    )


# --- the gateway refuses, or is not there ---------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ([], "GET /admin/routes/titanic refused (401): "),
        (["--token", "not-a-jwt"], "GET /admin/routes/titanic refused (401): "),
        (["--token", PREDICT_ONLY], "GET /admin/routes/titanic refused (403): "),
    ],
    ids=["no-token", "bad-token", "predict-scope"],
)
def test_a_token_the_gateway_refuses_is_one_line_saying_what_to_pass(
    gateway: Running,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    credentials: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("DRIFTGATE_TOKEN")
    # Minted here, not when the parameters are collected: the suite runs longer than a TTL.
    credentials = [token("predict") if c == PREDICT_ONLY else c for c in credentials]

    status, _, err = run(["get", "titanic", *credentials], capsys)

    assert status == 1
    line = one_line(err)
    assert line.startswith(f"driftgate: {message}")
    assert line.endswith("driftgate token create --sub NAME --scope admin")


def test_a_route_name_no_route_can_have_is_named(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(["get", "a b"], capsys)

    assert status == 1
    assert one_line(err).startswith(
        "driftgate: GET /admin/routes/a%20b refused (404): unknown route: 'a b' is not"
    )


def test_a_gateway_that_is_down_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    status, _, err = run(["list", "--gateway", url], capsys)

    assert status == 2
    assert one_line(err).startswith(f"driftgate: cannot reach the gateway at {url}: ")


def test_a_runtime_replica_given_as_the_gateway_could_not_be_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica's 404 for an admin path (its words, runtime/app.py) exited 1, as if a
    gateway had refused; the request never reached one (exit status 2)."""
    replica = "http://127.0.0.1:8001"
    words = (
        "/admin/routes is the gateway's, and this is a runtime replica: send it to the "
        "gateway (port 8000 under `driftgate up`)"
    )
    transport = httpx.MockTransport(lambda _: httpx.Response(404, json={"error": words}))
    monkeypatch.setattr(
        "driftgate.routes_cli._client",
        lambda args: AdminClient(args.gateway, None, transport=transport),
    )

    status, _, err = run(["list", "--gateway", replica], capsys)

    assert status == 2
    assert one_line(err) == (
        f"driftgate: GET /admin/routes: {replica} did not answer as a driftgate gateway's "
        f"admin API does (404: {words}); --gateway or DRIFTGATE_GATEWAY_URL says where the "
        "gateway is"
    )


def test_a_bad_gateway_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTGATE_GATEWAY_URL", "localhost:8000")

    with pytest.raises(SystemExit) as exited:
        main(["routes", "list"])

    assert exited.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("got 'localhost:8000' (flag or DRIFTGATE_GATEWAY_URL)")
    )


def test_as_a_command_it_prints_nothing_else(gateway: Running, tmp_path: Path) -> None:
    """Run as ``driftgate``: no request log lines (httpx logs each at INFO) on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "driftgate", "routes", "weights", "titanic", "canary=20"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DRIFTGATE_GATEWAY_URL": gateway.url},
    )

    assert (done.returncode, done.stdout, done.stderr) == (0, "titanic: canary 10 -> 20\n", "")


def test_weights_leave_a_progressing_canary_to_itself(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = {"target": {"model": "iris", "version": "3"}}
    primary = {"model": "iris", "version": "2"}
    put = gateway.admin.put("/admin/routes/iris", json={"primary": primary, "canary": canary})
    put.raise_for_status()

    status, _, err = run(["weights", "iris", "stable=50"], capsys)

    assert status == 2
    assert one_line(err).startswith(
        "driftgate: route iris runs a canary, which sets its arms' weights itself"
    )


# --- delete: a route a typo created, or an override of gateway.yaml's policy ------------

TYPO = {"primary": {"model": "titanic", "version": "2"}}


def test_delete_removes_a_route_created_by_a_typo(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.admin.put("/admin/routes/titanc", json=TYPO).raise_for_status()

    status, out, _ = run(["delete", "titanc"], capsys)

    assert (status, out) == (
        0,
        "titanc: removed; no longer configured (served like any model without a route: titanc)\n",
    )
    assert gateway.admin.get("/admin/routes/titanc").json()["configured"] is False
    assert "titanc" not in run(["list"], capsys)[1]


def test_delete_gives_gateway_yaml_its_route_back(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml_policy = gateway.policy()
    gateway.admin.put("/admin/routes/titanic", json={**yaml_policy, "retries": 3})

    status, out, _ = run(["delete", "titanic"], capsys)

    assert (status, out) == (
        0,
        "titanic: removed; gateway.yaml's policy serves again: stable 90 -> titanic v1, "
        "canary 10 -> titanic v2; fallback titanic_pmml\n",
    )
    assert gateway.policy() == yaml_policy


def test_delete_of_a_route_only_gateway_yaml_has_says_to_change_gateway_yaml(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(["delete", "titanic"], capsys)

    assert status == 1
    assert one_line(err) == (
        "driftgate: DELETE /admin/routes/titanic refused (409): route titanic is configured "
        "in gateway.yaml, not through the admin API: remove or change it there (the gateway "
        "reads it at start). Nothing changed"
    )


def test_delete_of_a_route_not_configured_is_refused(
    gateway: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(["delete", "titanc"], capsys)

    assert status == 1
    assert "refused (404): route titanc is not configured" in one_line(err)


def older_gateway(request: httpx.Request) -> httpx.Response:
    """A gateway from before DELETE: its admin API reads routes; its framework answers 405
    to a DELETE."""
    if request.method == "DELETE":
        return httpx.Response(405, json={"error": "Method Not Allowed"})
    policy = {"primary": {"model": "titanic", "version": "2"}}
    answer = {"route": "titanc", "configured": True, "policy": policy}
    return httpx.Response(200, json=answer, headers={"etag": '"abc"'})


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["read-first", "force"])
def test_delete_on_a_gateway_from_before_delete_says_to_upgrade_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, force: list[str]
) -> None:
    """Its 405 was taken for no gateway at all ("did not answer as a driftgate gateway's
    admin API does", exit status 2), during a rolling upgrade."""
    url = "http://127.0.0.1:8000"
    transport = httpx.MockTransport(older_gateway)
    monkeypatch.setattr(
        "driftgate.routes_cli._client",
        lambda args: AdminClient(args.gateway, None, transport=transport),
    )

    status, _, err = run(["delete", "titanc", "--gateway", url, *force], capsys)

    assert status == 1
    assert one_line(err) == (
        f"driftgate: the gateway at {url} does not support DELETE /admin/routes (an older "
        "version): upgrade it, or remove <routes_dir>/titanc.yaml (routes_dir as its "
        "gateway.yaml sets it): every gateway sharing the folder serves the route without "
        "it within 2 seconds. Nothing changed"
    )


def test_delete_where_no_gateway_answers_405_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --force nothing was read first: a 405 from a server that reads no route either
    is not taken for an older gateway."""
    url = "http://127.0.0.1:9000"
    transport = httpx.MockTransport(
        lambda _: httpx.Response(405, json={"error": "Method Not Allowed"})
    )
    monkeypatch.setattr(
        "driftgate.routes_cli._client",
        lambda args: AdminClient(args.gateway, None, transport=transport),
    )

    status, _, err = run(["delete", "titanc", "--gateway", url, "--force"], capsys)

    assert status == 2
    assert one_line(err) == (
        f"driftgate: GET /admin/routes/titanc: {url} did not answer as a driftgate gateway's "
        "admin API does (405: Method Not Allowed); --gateway or DRIFTGATE_GATEWAY_URL says "
        "where the gateway is"
    )


def test_delete_refuses_a_route_changed_since_it_read_it_unless_forced(
    gateway: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague's PUT lands between the command's GET and its DELETE."""
    gateway.admin.put("/admin/routes/titanc", json=TYPO).raise_for_status()
    read = AdminClient.get

    def read_then_a_colleague_writes(client: AdminClient, name: str) -> Route:
        route = read(client, name)
        gateway.admin.put(f"/admin/routes/{name}", json={**TYPO, "retries": 3})
        return route

    monkeypatch.setattr(AdminClient, "get", read_then_a_colleague_writes)
    status, _, err = run(["delete", "titanc"], capsys)

    now_etag = gateway.admin.get("/admin/routes/titanc").headers["etag"]
    assert status == 1
    assert one_line(err) == (
        f"driftgate: route titanc changed since this read it (its ETag is now {now_etag}); "
        "nothing changed: run driftgate routes get titanc to see it, and delete again if it "
        "should still go (or --force)"
    )
    assert gateway.policy("titanc")["retries"] == 3
    assert run(["delete", "titanc", "--force"], capsys)[0] == 0
    assert gateway.admin.get("/admin/routes/titanc").json()["configured"] is False
