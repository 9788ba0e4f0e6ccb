"""``worker.retry.backoff``: one formula for every retry."""

from __future__ import annotations

import random

from worker.retry import backoff


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    delays = [backoff(n, 0.5, 5.0, jitter=False) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff(0, 0.5, 5.0, jitter=False) == 0.5  # no failure yet: the base
    assert backoff(10_000, 0.5, 5.0, jitter=False) == 5.0  # no overflow


def test_jitter_keeps_half_the_delay_and_randomises_the_rest() -> None:
    rng = random.Random(1)
    for n in range(1, 13):
        d = min(30.0, 0.5 * 2 ** (n - 1))
        for _ in range(50):
            assert d / 2 <= backoff(n, 0.5, 30.0, rng=rng) <= d
    # The same seed repeats a delay, another seed gives a different one.
    assert backoff(3, 0.5, 30.0, rng=random.Random(1)) == backoff(
        3, 0.5, 30.0, rng=random.Random(1)
    )
    assert backoff(3, 0.5, 30.0, rng=random.Random(1)) != backoff(
        3, 0.5, 30.0, rng=random.Random(2)
    )
