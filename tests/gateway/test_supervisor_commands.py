"""The commands ``driftgate up``'s supervisor runs its replicas with (gateway/supervisor.py)."""

from __future__ import annotations

from pathlib import Path

from driftgate.cli import build_parser
from gateway.supervisor import STOP_GRACE_S, ReplicaSupervisor


def test_a_replica_finishes_its_shutdown_before_the_supervisor_kills_it(tmp_path: Path) -> None:
    """The runtime waits up to 20 s for requests in flight by default; the supervisor sends
    SIGKILL 10 s after SIGTERM, so a hung request cut the replica's shutdown short."""
    supervisor = ReplicaSupervisor(repository=tmp_path, ports=[8123], log_dir=tmp_path)
    command = supervisor._runtime_command(8123)

    args = build_parser().parse_args(command[3:])  # past `python -m driftgate`
    assert args.shutdown_timeout < STOP_GRACE_S
