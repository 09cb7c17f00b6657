"""bench/gateway_overhead.py's verdicts (bench/overhead_report.py): a one-sided sign test over
the rounds of a run."""

from __future__ import annotations

import math

import pytest

from tests.bench.test_drift_benches import load

overhead_report = load("overhead_report")


@pytest.mark.parametrize(
    ("rounds", "needed"), [(3, None), (4, None), (5, 5), (6, 6), (8, 8), (9, 8), (10, 9)]
)
def test_the_rounds_that_must_agree_keep_the_chance_of_a_wrong_verdict_at_most_1_in_32(
    rounds: int, needed: int | None
) -> None:
    assert overhead_report.rounds_needed(rounds) == needed
    if needed is not None:  # the tail at the threshold is within the level, one below is not
        tail = sum(math.comb(rounds, i) for i in range(needed, rounds + 1)) / 2**rounds
        looser = tail + math.comb(rounds, needed - 1) / 2**rounds
        assert tail <= 1 / 32 < looser


@pytest.mark.parametrize(
    ("passed", "word"),
    [
        ([True] * 5, "met"),
        ([True] * 4 + [False], "inconclusive"),
        ([False] * 5, "missed"),
        ([True] * 4, "inconclusive"),  # too few rounds for any verdict
        ([True] * 8 + [False], "met"),
        ([False] * 8 + [True], "missed"),
        ([True] * 7 + [False] * 2, "inconclusive"),
        ([True] * 9 + [False], "met"),
    ],
)
def test_a_verdict_needs_enough_rounds_to_agree(passed: list[bool], word: str) -> None:
    assert overhead_report.verdict_word(passed) == word
