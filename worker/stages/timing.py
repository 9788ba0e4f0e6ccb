"""Frame times that always increase, for inputs whose timestamps go backwards or repeat."""

from __future__ import annotations

from fractions import Fraction

__all__ = ["FrameClock"]


class FrameClock:
    """Frame times that always increase, chosen as FFmpeg's best-effort timestamp is.

    Some files' timestamps go backwards or repeat in presentation order. AVI with packed
    B-frames (DivX/Xvid) is the common case: it stores decode-order times, which the decoder
    hands out with the frames put in display order (0.04, 0.12, 0.08, 0.20, 0.16, ...). Like
    FFmpeg's ``guess_correct_pts`` (libavcodec/decode.c; PyAV does not expose the
    ``best_effort_timestamp`` it computes), count how often the presentation and the decode
    timestamps each failed to increase and use the one that failed less often. A time that
    still does not increase (both are broken, or there is none) becomes the previous time plus
    one frame at the average rate. Times that merely vary (variable frame rate) are kept.

    Unlike FFmpeg, a frame's time is chosen once the next frame was counted: in 1, 3, 2, 5, 4
    the 3 is the wrong one, which only the 2 shows.
    """

    def __init__(self, time_base: Fraction, rate: Fraction, *, by_count: bool = False) -> None:
        self.step = 1 / (rate * time_base)  # one frame, in time_base units
        # The timestamps are known to be wrong (worker.stages.packed): after the first frame,
        # one frame at the rate each.
        self.by_count = by_count
        self.faulty_pts = 0
        self.faulty_dts = 0
        self.seen_pts: int | None = None
        self.seen_dts: int | None = None
        self.last: int | None = None  # the time handed out last
        self.exact = Fraction(0)  # the same, unrounded: frame steps add up without drift
        self.fixed = 0  # frames given another time than the presentation timestamp they had

    def count(self, pts: int | None, dts: int | None) -> None:
        """Count one more frame's timestamps (FFmpeg's pts_correction_* bookkeeping)."""
        if dts is not None:
            self.faulty_dts += self.seen_dts is not None and dts <= self.seen_dts
            self.seen_dts = dts
        elif pts is not None:
            self.seen_dts = pts
        if pts is not None:
            self.faulty_pts += self.seen_pts is not None and pts <= self.seen_pts
            self.seen_pts = pts
        elif dts is not None:
            self.seen_pts = dts

    def time(self, pts: int | None, dts: int | None) -> int:
        """The time, in time_base units, of the oldest frame counted and not yet timed."""
        t: int | None
        if self.by_count and self.last is not None:
            t = None  # the next step, below
        elif pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            t = pts
        else:
            t = dts
        if t is None or (self.last is not None and t <= self.last):
            if self.last is None:
                self.exact = Fraction(0)
                t = 0
            else:
                self.exact += self.step
                t = max(round(self.exact), self.last + 1)
        else:
            self.exact = Fraction(t)
        if pts is not None and t != pts:
            self.fixed += 1
        self.last = t
        return t
