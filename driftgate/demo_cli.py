"""``driftgate demo``: the demo model repository, a sample digit, and demo traffic.

    driftgate demo build DIR                 build the demo model repository
    driftgate demo digit N FILE.png          write a sample digit image
    driftgate demo traffic [--scale fare=4]  titanic passengers through the gateway

Only the parser is built at import: the runtime's demo builders and httpx load when a
command runs, so that ``driftgate --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from driftgate.cli_arguments import count, fail, gateway_url, missing_config


def add_demo_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="the demo model repository")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True)
    build = demo_commands.add_parser("build", help="build the demo repository into DIR")
    build.add_argument("directory", type=Path)
    build.set_defaults(handler=_build_demo)
    digit = demo_commands.add_parser("digit", help="write a sample handwritten digit as PNG")
    digit.add_argument("digit", type=int, choices=range(10))
    digit.add_argument("path", type=Path)
    digit.set_defaults(handler=_write_digit)
    traffic = demo_commands.add_parser(
        "traffic", help="send titanic passengers through the gateway (optionally shifted)"
    )
    traffic.add_argument(
        "--url", type=gateway_url, default="http://localhost:8000", help="the gateway"
    )
    traffic.add_argument("--config", type=Path, default=Path("var/gateway.yaml"))
    traffic.add_argument("--requests", type=count(1), default=40)
    traffic.add_argument("--rows-per-request", type=count(1), default=25)
    traffic.add_argument(
        "--scale",
        action="append",
        default=[],
        help="multiply a numeric feature, e.g. fare=4 (repeatable): a drift to detect",
    )
    traffic.add_argument("--seed", type=int, default=0)
    traffic.set_defaults(handler=_send_demo_traffic)


def _build_demo(args: argparse.Namespace) -> int:
    from driftgate.reference import build_demo_references
    from runtime.demo import build_demo_repository

    if args.directory.exists() and not args.directory.is_dir():
        return fail(f"{args.directory} is not a folder")
    try:
        names = build_demo_repository(args.directory)
        references = build_demo_references(args.directory)
    except OSError as exc:
        return fail(f"cannot build the demo repository in {args.directory}: {exc}")
    print(f"built demo repository in {args.directory}: {', '.join(names)}")
    print(f"with {len(references)} drift reference profiles (titanic)")
    return 0


def _write_digit(args: argparse.Namespace) -> int:
    from runtime.demo.digits import write_sample_digit_png

    try:
        write_sample_digit_png(args.path, args.digit)
    except OSError as exc:
        return fail(f"cannot write {args.path}: {exc.strerror or exc}")
    print(f"wrote a handwritten {args.digit} to {args.path}")
    return 0


def _send_demo_traffic(args: argparse.Namespace) -> int:
    import httpx

    from driftgate.demo_traffic import parse_scales, send_traffic

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        scales = parse_scales(args.scale)
    except ValueError as exc:
        return fail(str(exc))
    missing = missing_config(args.config)
    if missing is not None:  # its auth key signs the requests' token
        return fail(missing)
    try:
        statuses = send_traffic(
            args.url,
            args.config,
            requests=args.requests,
            rows_per_request=args.rows_per_request,
            scales=scales,
            seed=args.seed,
        )
    except httpx.HTTPError as exc:  # the gateway is down, or not at that URL
        return fail(f"cannot reach the gateway at {args.url}: {exc}")
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    answered = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
    rows = args.requests * args.rows_per_request
    print(f"sent {args.requests} requests ({rows} passengers) to titanic: {answered}")
    return 0 if set(statuses) == {200} else 1
