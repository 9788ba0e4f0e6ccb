"""What a benchmark's child process needs, importing nothing heavy (the child's own imports are
part of what is measured): its peak RSS printed before it exits, as
``bench_support.run_child`` reads it, and per-stage timers."""

from __future__ import annotations

import sys

__all__ = ["Stages", "print_peak_rss"]


def print_peak_rss() -> None:
    """This process's RSS high-water mark on stderr (``VmHWM_KIB=``). VmHWM belongs to the
    address space made by exec; ru_maxrss would also count the parent's pages at fork time."""
    with open("/proc/self/status", encoding="ascii") as f:
        hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")]
    print("VmHWM_KIB=" + (hwm[0] if hwm else "?"), file=sys.stderr, flush=True)


class Stages:
    """Seconds spent per named stage, in the order first seen."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        n = max(frames, 1)
        return {k: round(1000 * v / n, 2) for k, v in self.seconds.items()}
