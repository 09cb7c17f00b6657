"""``batching:`` switched off, then back on with the same settings, while a call made
without batching still runs: the version's queue waits for that call, as a queue made for
a new ``batching:`` does (``runtime.handover``), instead of running beside it.

The version keeps its queue while batching is off; taken up again unchanged, that queue
knew nothing of the calls made meanwhile.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from runtime.repository import ModelRepository
from tests.runtime.test_unload_under_running_calls import (
    Held,
    at_gate,
    held_format,
    held_repository,
    infer,
    new_predictor,
    opened_at_the_end,
)

__all__ = ["held_format"]  # the autouse fixture that registers the ``held`` format

BATCHING = "format: held\nbatching: {max_batch_size: 8}\n"


def test_batching_switched_back_on_waits_for_the_calls_made_while_it_was_off(
    tmp_path: Path,
) -> None:
    root = held_repository(tmp_path, BATCHING)
    repository = ModelRepository(root)
    repository.scan()
    predictor = new_predictor(threads=4)

    async def main() -> None:
        model = repository.acquire("held")
        first = await asyncio.wait_for(infer(predictor, model, 1), 5)  # the queue is made
        assert first.outputs["y"].tolist() == [2.0]

        (root / "held" / "config.yaml").write_text("format: held\n")
        await asyncio.to_thread(repository.scan)
        unbatched = infer(predictor, model, 2)  # held at the gate, in a thread
        await at_gate()

        (root / "held" / "config.yaml").write_text(BATCHING)  # back on, unchanged
        await asyncio.to_thread(repository.scan)
        batched = infer(predictor, model, 1)
        await asyncio.sleep(0.3)
        assert not batched.done()  # waits for the call made while batching was off

        Held.opened.set()
        second, third = await asyncio.wait_for(asyncio.gather(unbatched, batched), 5)
        assert second.outputs["y"].tolist() == [2.0, 4.0]
        assert third.outputs["y"].tolist() == [2.0]

    try:
        asyncio.run(opened_at_the_end(main()))
    finally:
        predictor.close()
        repository.close()
    assert Held.calls == [1, 2, 1]
    assert Held.most_active == 1
