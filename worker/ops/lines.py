"""Line crossings: how many tracked objects crossed a line, each way (supervision's
``LineZone``, on one anchor point per object).

A line runs from its first point to its second. An object crosses it when its anchor (a
box's bottom centre) moves from one side to the other between two frames it is seen on, at
a place the segment spans (an object passing beyond the segment's end does not count).
``in`` is a crossing to the right-hand side walking from the first point to the second (on
the picture, y down: a line drawn left to right counts ``in`` downwards), ``out`` the other
way. Plain arithmetic per object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Crossing", "LineCounter"]

Point = tuple[float, float]


@dataclass(frozen=True)
class Crossing:
    line: str
    id: int
    label: str
    direction: str  # "in" or "out"


@dataclass
class LineCounter:
    """One line's crossings, in frame pixels (``a`` to ``b``)."""

    name: str
    a: Point
    b: Point
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"in": {}, "out": {}}
    )  # direction -> label -> crossings
    _last: dict[int, Point] = field(default_factory=dict)

    def _side(self, p: Point) -> float:
        (ax, ay), (bx, by) = self.a, self.b
        return (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)

    def _spans(self, p: Point, q: Point) -> bool:
        """Whether the step from p to q meets the segment (not the line beyond its ends)."""
        (ax, ay), (bx, by) = self.a, self.b
        d1 = (q[0] - p[0]) * (ay - p[1]) - (q[1] - p[1]) * (ax - p[0])
        d2 = (q[0] - p[0]) * (by - p[1]) - (q[1] - p[1]) * (bx - p[0])
        return d1 * d2 <= 0

    def update(self, objects: Sequence[tuple[int, str, Point]]) -> list[Crossing]:
        """(id, label, anchor) of the frame's tracked objects (id 0: not tracked, skipped);
        the crossings since each one's previous frame."""
        out = []
        for oid, label, p in objects:
            if oid == 0:
                continue
            s1 = self._side(p)
            if s1 == 0:
                continue  # on the line: it crosses when it leaves it on the other side
            before = self._last.get(oid)
            self._last[oid] = p
            if before is None or self._side(before) * s1 > 0 or not self._spans(before, p):
                continue
            way = "in" if s1 > 0 else "out"
            self.counts[way][label] = self.counts[way].get(label, 0) + 1
            out.append(Crossing(self.name, oid, label, way))
        return out

    def forget(self, live: set[int]) -> None:
        """Drop the points of objects no longer tracked (memory stays bounded)."""
        for oid in [k for k in self._last if k not in live]:
            del self._last[oid]
