"""A process that logs predictions and then gets killed: run by test_durability.py.

    python -m tests.monitoring.log_child STORE INTERVAL_S BATCHES ROWS [--on-sigterm-close]

Submits BATCHES batches of ROWS records each, sleeping two flush intervals between
batches, prints ``submitted <total>`` after the last one and then sleeps until a signal
ends it. With ``--on-sigterm-close`` SIGTERM runs ``writer.close()`` first, as the gateway
does on shutdown.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

from monitoring.prediction_log import LogSettings, PredictionLogWriter
from tests.monitoring.builders import predictions


def main(argv: list[str]) -> int:
    store, interval, batches, rows = Path(argv[0]), float(argv[1]), int(argv[2]), int(argv[3])
    settings = LogSettings(flush_interval_s=interval, flush_rows=10**6, max_queue=10**6)
    writer = PredictionLogWriter(store, settings)
    if "--on-sigterm-close" in argv:

        def close_and_exit(signum: int, frame: FrameType | None) -> None:
            writer.close()
            sys.exit(0)

        signal.signal(signal.SIGTERM, close_and_exit)
    writer.start()
    for batch in range(batches):
        if batch:
            time.sleep(2 * interval)
        writer.submit(predictions(rows, prefix=f"b{batch}"))
    print(f"submitted {batches * rows}", flush=True)
    time.sleep(600)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
