"""``worker.live.counters``: a camera's frame counters and latency statistics."""

from __future__ import annotations

import pytest

from worker.live.counters import LATENCY_BUCKETS_S, Counters, LatencyStats


def test_counters_snapshot_sums_drops_by_reason() -> None:
    c = Counters()
    for _ in range(5):
        c.receive()
    for _ in range(2):
        c.process()
    c.drop("late")
    c.drop("queue_full", 2)
    snap = c.snapshot()
    want = {"late": 1, "queue_full": 2}
    assert snap == {
        "received": 5, "processed": 2, "skipped": 0, "dropped": 3, "dropped_by_reason": want
    }  # fmt: skip
    # The snapshot is a copy: changing it does not change the counters.
    snap["dropped_by_reason"]["late"] = 99
    assert c.snapshot()["dropped_by_reason"] == {"late": 1, "queue_full": 2}


def test_latency_cumulative_buckets_end_with_inf() -> None:
    s = LatencyStats()
    for v in (0.01, 0.05, 0.2, 20.0):  # 0.05 sits on a bound: le is inclusive
        s.observe(v)
    buckets, count, total = s.cumulative()
    assert [le for le, _ in buckets] == [repr(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
    # Cumulative counts; 20 s is above every finite bucket and only in +Inf.
    assert [n for _, n in buckets] == [1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4]
    assert count == 4
    assert total == pytest.approx(20.26)


def test_latency_percentiles_in_ms() -> None:
    s = LatencyStats()
    assert s.percentiles_ms() == {}
    for ms in range(1, 101):
        s.observe(ms / 1000)
    p = s.percentiles_ms()
    assert p == {"p50": 50.5, "p90": 90.1, "p99": 99.0, "max": 100.0}


def test_latency_percentiles_use_recent_window() -> None:
    s = LatencyStats(recent=3)
    for v in (5.0, 0.1, 0.2, 0.3):
        s.observe(v)
    p = s.percentiles_ms((50,))
    assert p["p50"] == 200.0  # 5 s has left the window
    assert p["max"] == 5000.0  # max is over all frames
