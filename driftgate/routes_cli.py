"""``driftgate routes``: a running gateway's route policies, read and changed through its
admin API (docs/gateway.md, "The admin API").

    driftgate routes list [--format text|yaml|json]    every configured route, one line each
                                                       (who answers, shadows, fallbacks)
    driftgate routes get MODEL [--format yaml|json]    one route's policy
    driftgate routes set MODEL --file policy.yaml      replace it with the file's policy
    driftgate routes weights MODEL ARM=WEIGHT ...      change only its A/B weights
    driftgate routes delete MODEL                      remove the policy the admin API set

Each takes ``--gateway`` (default ``$DRIFTGATE_GATEWAY_URL``, else http://127.0.0.1:8000)
and ``--token`` (default ``$DRIFTGATE_TOKEN``: a token with scope ``admin``, from
``driftgate token create --sub NAME --scope admin``).

Changes never overwrite one made since the policy was read. ``get`` in YAML starts with
the route's ETag in a comment; ``set`` sends it back as ``If-Match`` (without one in the
file, it sends the ETag of a ``GET`` it makes first), so a route that the canary stepped or
a colleague changed in between is refused, not overwritten; ``--force`` overwrites.
``weights`` reads the route, changes the weights named and nothing else, and writes it back
conditionally; when the route changed in between, it reads it again and applies the
weights to the new policy, once. ``delete`` sends the ETag of a ``GET`` it makes first, so
it removes the route it read and nothing newer (``--force`` sends none); what serves then
is gateway.yaml's policy, or the default for a route gateway.yaml does not have.

Exit status: 0 done; 1 the gateway refused (its reason on one line, a route changed since
read among them); 2 the request could not be made as asked (a flag, a file, an arm the
route lacks, the gateway unreachable).

Only the parser is built at import: httpx and PyYAML load when a command runs, so that
``driftgate --help`` stays fast.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftgate.cli_arguments import gateway_url
from driftgate.route_summary import answering, reweigh, summary

if TYPE_CHECKING:
    from driftgate.admin_client import AdminClient, Route

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
#: The comment ``get`` writes above a policy in YAML, which ``set`` reads the ETag from.
_ETAG_COMMENT = re.compile(r'^#.*\betag ("[^"]*")', re.MULTILINE)
#: The route that comment names: ``set`` refuses to give its policy to another route.
_ROUTE_COMMENT = re.compile(r"^# route (\S+?)[,\s]", re.MULTILINE)


def add_routes_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def gateway_flag(text: str) -> str:
        try:
            return gateway_url(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (flag or DRIFTGATE_GATEWAY_URL)") from None

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--gateway",
        type=gateway_flag,
        default=os.environ.get("DRIFTGATE_GATEWAY_URL", DEFAULT_GATEWAY),
        help=f"the gateway (default $DRIFTGATE_GATEWAY_URL, else {DEFAULT_GATEWAY})",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("DRIFTGATE_TOKEN"),
        help="a token with scope admin (default $DRIFTGATE_TOKEN)",
    )
    routes = commands.add_parser("routes", help="a running gateway's route policies")
    route_commands = routes.add_subparsers(dest="routes_command", required=True)

    listing = route_commands.add_parser("list", parents=[common], help="every configured route")
    listing.add_argument(
        "--format",
        choices=("text", "yaml", "json"),
        default="text",
        help="text (default: one line each), or yaml or json: each route's ETag and policy",
    )
    listing.set_defaults(handler=run, routes_handler=_list)

    get = route_commands.add_parser("get", parents=[common], help="one route's policy")
    get.add_argument("model", help="the route (a model name)")
    get.add_argument(
        "--format",
        choices=("yaml", "json"),
        default="yaml",
        help="yaml (default; starts with the ETag that `set` sends back) or json",
    )
    get.set_defaults(handler=run, routes_handler=_get)

    put = route_commands.add_parser(
        "set", parents=[common], help="replace a route's policy, unless it changed since read"
    )
    put.add_argument("model", help="the route (a model name)")
    put.add_argument("--file", type=Path, required=True, help="the policy, YAML or JSON")
    put.add_argument(
        "--force", action="store_true", help="overwrite whatever the route is now (no If-Match)"
    )
    put.set_defaults(handler=run, routes_handler=_set)

    weights = route_commands.add_parser(
        "weights", parents=[common], help="change a route's A/B weights, nothing else"
    )
    weights.add_argument("model", help="the route (a model name)")
    weights.add_argument(
        "weights", nargs="+", type=arm_weight, metavar="ARM=WEIGHT", help="e.g. stable=90"
    )
    weights.set_defaults(handler=run, routes_handler=_weights)

    remove = route_commands.add_parser(
        "delete",
        parents=[common],
        help="remove the policy set through the admin API (gateway.yaml's serves again)",
    )
    remove.add_argument("model", help="the route (a model name)")
    remove.add_argument(
        "--force", action="store_true", help="remove whatever the route is now (no If-Match)"
    )
    remove.set_defaults(handler=run, routes_handler=_delete)


def arm_weight(text: str) -> tuple[str, int]:
    """``stable=90`` -> ``("stable", 90)``."""
    arm, _, weight = text.partition("=")
    if not arm or not weight.strip().isdecimal():
        raise argparse.ArgumentTypeError(
            f"expected ARM=WEIGHT with a whole number, e.g. stable=90, got {text!r}"
        )
    return arm, int(weight)


def _list(args: argparse.Namespace) -> int:
    import yaml

    with _client(args) as client:
        routes = client.routes()
    if args.format == "text":
        width = max((len(name) for name in routes), default=0)
        for name, route in sorted(routes.items()):
            print(f"{name:<{width}}  {summary(route.policy)}")
        return 0
    # As the admin API lists them: a script can PUT a policy back with its ETag as If-Match.
    listed = {name: {"etag": route.etag, "policy": route.policy} for name, route in routes.items()}
    if args.format == "json":
        print(json.dumps(listed, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(listed, sort_keys=False))
    return 0


def _get(args: argparse.Namespace) -> int:
    import yaml

    with _client(args) as client:
        route = client.get(args.model)
    if args.format == "json":
        print(json.dumps(route.policy, indent=2))
        return 0
    state = "" if route.configured else " (not configured: the default policy)"
    if route.etag is None:  # a gateway from before ETags
        print(f"# route {route.name}{state}")
    else:
        print(f"# route {route.name}{state}, etag {route.etag}: routes set sends it as If-Match")
    sys.stdout.write(yaml.safe_dump(route.policy, sort_keys=False))
    return 0


def _set(args: argparse.Namespace) -> int:
    from driftgate.admin_client import AdminError, RouteChanged

    policy, read_etag, read_route = _read_policy(args.file)
    if read_route is not None and read_route != args.model:
        raise AdminError(
            f"--file {args.file} holds the policy of route {read_route} (its first line says "
            f"so), not of {args.model}: set {read_route}, or remove that line to give "
            f"{args.model} this policy",
            usage=True,
        )
    with _client(args) as client:
        # Read first: a name mistyped is a route not configured, which this creates.
        current = client.get(args.model)
        if args.force:
            if_match = None
        elif read_etag is not None:
            if_match = read_etag
        else:  # written by hand: at least never overwrite a change racing this command
            if_match = current.etag
        try:
            written = client.put(args.model, policy, if_match)
        except RouteChanged as exc:
            since = f"{args.file} was read" if read_etag else "this read it"
            raise AdminError(
                f"route {args.model} changed since {since} (its ETag is now {exc.etag}); "
                f"nothing changed: run driftgate routes get {args.model}, make the change on "
                "what it prints, and set that (or --force to overwrite)"
            ) from None
    if current.configured:
        print(f"{args.model}: replaced; {summary(written.policy)}")
    else:
        print(
            f"{args.model}: created (it was not configured: a new route); {summary(written.policy)}"
        )
    return 0


def _weights(args: argparse.Namespace) -> int:
    from driftgate.admin_client import AdminError, RouteChanged

    weights = dict(args.weights)
    if len(weights) < len(args.weights):
        raise AdminError("name each arm once", usage=True)
    with _client(args) as client:
        try:
            return _reweigh_route(client, client.get(args.model), weights)
        except RouteChanged:
            print(
                f"driftgate: route {args.model} changed while this ran; "
                "reading it again to apply the weights to its new policy",
                file=sys.stderr,
            )
        try:
            return _reweigh_route(client, client.get(args.model), weights)
        except RouteChanged as exc:
            raise AdminError(
                f"route {args.model} changed again while this ran (its ETag is now {exc.etag}); "
                "nothing changed: run this once more"
            ) from None


def _delete(args: argparse.Namespace) -> int:
    from driftgate.admin_client import AdminError, MethodNotAllowed, RouteChanged

    with _client(args) as client:
        if_match = None if args.force else client.get(args.model).etag
        try:
            route = client.delete(args.model, if_match)
        except RouteChanged as exc:
            raise AdminError(
                f"route {args.model} changed since this read it (its ETag is now {exc.etag}); "
                f"nothing changed: run driftgate routes get {args.model} to see it, and delete "
                "again if it should still go (or --force)"
            ) from None
        except MethodNotAllowed:
            if args.force:
                client.get(args.model)  # raises unless a gateway's admin API answers
            # A gateway whose admin API reads routes but has no DELETE: an older version,
            # as during a rolling upgrade. Not a mistake in the command (exit status 1).
            raise AdminError(
                f"the gateway at {client.url} does not support DELETE /admin/routes (an "
                f"older version): upgrade it, or remove <routes_dir>/{args.model}.yaml "
                "(routes_dir as its gateway.yaml sets it): every gateway sharing the folder "
                "serves the route without it within 2 seconds. Nothing changed"
            ) from None
    if route.configured:
        print(f"{args.model}: removed; gateway.yaml's policy serves again: {summary(route.policy)}")
    else:
        print(
            f"{args.model}: removed; no longer configured (served like any model without a "
            f"route: {summary(route.policy)})"
        )
    return 0


def _reweigh_route(client: AdminClient, route: Route, weights: dict[str, int]) -> int:
    """PUT ``route`` reweighed, conditional on its ETag; raises RouteChanged."""
    from driftgate.admin_client import AdminError

    if not route.configured:
        raise AdminError(
            f"route {route.name} is not configured, so it has no arms to weigh "
            "(driftgate routes list shows the routes)",
            usage=True,
        )
    try:
        policy, changes = reweigh(route.name, route.policy, weights)
    except ValueError as exc:
        raise AdminError(str(exc), usage=True) from None
    if not changes:
        print(f"{route.name}: weights unchanged ({answering(route.policy)})")
        return 0
    client.put(route.name, policy, route.etag)
    print(f"{route.name}: " + ", ".join(f"{arm} {old} -> {new}" for arm, old, new in changes))
    return 0


def run(args: argparse.Namespace) -> int:
    """The sub-command's handler, with every failure as one line on stderr."""
    from driftgate.admin_client import AdminError

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        result: int = args.routes_handler(args)
    except AdminError as exc:
        print(f"driftgate: {exc}", file=sys.stderr)
        return 2 if exc.usage else 1
    return result


def _client(args: argparse.Namespace) -> AdminClient:
    from driftgate.admin_client import AdminClient

    return AdminClient(args.gateway, args.token or None)


def _read_policy(path: Path) -> tuple[dict[str, Any], str | None, str | None]:
    """The policy in ``path`` (YAML, or JSON), and the ETag and the route in the comment
    ``get`` writes above it, if any."""
    import yaml

    from driftgate.admin_client import AdminError
    from gateway.settings import SettingsError, parse_yaml

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminError(f"--file {path}: cannot read it: {exc}", usage=True) from None
    try:
        policy = parse_yaml(text)  # a key given twice is refused, as in gateway.yaml
    except RecursionError:
        raise AdminError(f"--file {path}: nested too deeply", usage=True) from None
    except SettingsError as exc:
        raise AdminError(f"--file {path}: {exc}", usage=True) from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise AdminError(f"--file {path}: not YAML or JSON: {problem}", usage=True) from None
    if not isinstance(policy, dict):
        raise AdminError(
            f"--file {path}: expected a route policy (a mapping such as routes get prints)",
            usage=True,
        )
    heading = "\n".join(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines()))
    etag = _ETAG_COMMENT.search(heading)
    route = _ROUTE_COMMENT.search(heading + "\n")
    return policy, etag[1] if etag else None, route[1] if route else None
