"""Which frames to process: every Nth (``--every``), at most F per second (``--fps``).

Frames not chosen are still decoded (a video's frames depend on each other) and, in files,
still written to the output video with the latest answer drawn over them; they get no JSON
line, no event update and no inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Sampler"]


@dataclass
class Sampler:
    every: int = 1
    fps: float | None = None
    _due: float | None = field(default=None, init=False)  # next time a frame may be taken
    _count: int = field(default=0, init=False)

    @property
    def all(self) -> bool:
        return self.every <= 1 and self.fps is None

    def take(self, t: float) -> bool:
        """Whether the next frame (at time ``t``, seconds) is processed. Counts frames as
        they come, so ``every`` keeps its rhythm across resolution changes and reconnects."""
        n, self._count = self._count, self._count + 1
        if self.every > 1 and n % self.every:
            return False
        if self.fps is None:
            return True
        step = 1.0 / self.fps
        # A little slack: timestamps rounded to the time base must not skip a due frame.
        if self._due is None or t >= self._due - step * 0.01:
            # From the due time, not from t: the rate holds on average; after a gap (a
            # stall, a seek), restart from t rather than catch up with a burst.
            self._due = max((self._due or t) + step, t + step * 0.5)
            return True
        return False
