"""How long to wait before trying again: one formula for every retry in the worker (a job's
next attempt, a camera's reconnect, Redis while it is away, an event sink's receiver)."""

from __future__ import annotations

import random

__all__ = ["backoff"]


def backoff(
    failures: int,
    base_s: float,
    cap_s: float,
    *,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after ``failures`` failures in a row (1 = the first): ``base_s`` doubled
    for each failure after the first, capped at ``cap_s``.

    With ``jitter`` ("equal jitter"), half of that is fixed, so a retry never comes at once,
    and half is random, so the many clients that failed together (a Redis blip, a switch that
    dropped every camera) do not all come back in the same instant.
    """
    delay = min(cap_s, base_s * 2.0 ** min(max(failures - 1, 0), 62))
    if not jitter:
        return delay
    return delay / 2 + float((rng or random).uniform(0.0, delay / 2))
