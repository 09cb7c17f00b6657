"""A writer process that logs one new feature column per line it reads: run by
test_shape_concurrency.py, two at a time on one store.

    python -m tests.monitoring.shape_child STORE SHAPE      (SHAPE: scalar or list)

Prints ``ready`` once its writer has started; then, for each line ``<name>`` read from
stdin, writes one record whose only input ``<name>`` has that shape (``1.5`` or
``[1.5, 2.5]``), waits until it is on disk and prints ``done <name>``. Closes its writer
and exits at the end of stdin.
"""

from __future__ import annotations

import sys
from pathlib import Path

from monitoring.prediction_log import LogSettings, PredictionLogWriter
from tests.monitoring.builders import prediction

VALUES = {"scalar": 1.5, "list": [1.5, 2.5]}


def main(argv: list[str]) -> int:
    store, shape = Path(argv[0]), argv[1]
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=60))
    writer.start()
    print("ready", flush=True)
    for line in sys.stdin:
        name = line.strip()
        record = prediction(f"{shape}-{name}", inputs={name: VALUES[shape]}, outputs={})
        writer.submit([record])
        writer.flush()
        print(f"done {name}", flush=True)
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
