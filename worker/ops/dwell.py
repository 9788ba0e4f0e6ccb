"""Objects over time in zones: anchor points, dwell time per track per zone, and loitering.

- **Anchor**: the one point of a box that decides which zones hold it and when it crosses a
  line (supervision's ``Position``): the bottom centre by default, where a person or a car
  touches the ground, so a box reaching over a zone's edge is not counted in it.
- **Dwell**: how long each tracked object has been in each zone, from the first frame its
  anchor was seen inside. A stay survives ``grace_s`` seconds outside (a box jittering on
  the edge, a frame the detector missed) and ends once the object has been outside longer,
  or its track is dropped.
- **Loiter**: per-object watch rules (``door:person loiter=30s``): an event per track that
  stays in the zone ``loiter_s`` seconds, ending when its stay ends.

Times are the caller's (video seconds, or wall clock for cameras). Plain data, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.kinds import Anchor

__all__ = ["Dwell", "Loiter", "ObjectEvent", "Seen", "Stay", "anchor_of", "seen_in"]

Box = Sequence[float]  # x1, y1, x2, y2


def anchor_of(box: Box, where: Anchor = "bottom_center") -> tuple[float, float]:
    """The ``where`` point of ``box`` (x1, y1, x2, y2), as (x, y)."""
    x1, y1, x2, y2 = box[:4]
    vertical, _, horizontal = where.partition("_")
    if where == "center":
        vertical, horizontal = "center", "center"
    x = {"left": x1, "center": (x1 + x2) / 2, "right": x2}[horizontal]
    y = {"top": y1, "center": (y1 + y2) / 2, "bottom": y2}[vertical]
    return float(x), float(y)


@dataclass(frozen=True)
class Seen:
    """One tracked object in one frame: its track id, label, box and the zones holding it."""

    id: int
    label: str
    box: tuple[float, float, float, float]
    zones: tuple[str, ...]


def seen_in(objects: Iterable[Mapping[str, Any]]) -> list[Seen]:
    """The tracked ones of a frame record's ``objects`` (those with an id) as ``Seen``."""
    return [
        Seen(o["id"], o["label"], tuple(o["box"]), tuple(o.get("zones", ())))
        for o in objects
        if o.get("id")
    ]


@dataclass
class Stay:
    """One object's time in one zone."""

    id: int
    zone: str
    label: str
    enter: float  # the first time seen inside
    last_in: float  # the newest time seen inside
    box: tuple[float, float, float, float]  # its newest box seen inside

    @property
    def seconds(self) -> float:
        return self.last_in - self.enter


@dataclass
class Dwell:
    """The stays open now, keyed by (track id, zone)."""

    grace_s: float = 1.0
    stays: dict[tuple[int, str], Stay] = field(default_factory=dict)

    def update(
        self, seen: Iterable[Seen], t: float, live: Iterable[int] | None = None
    ) -> list[Stay]:
        """One frame's tracked objects (``id`` 0: not yet an object, skipped) at time ``t``,
        and the ids the tracker still keeps (``live``, seen or not this frame; None: an
        object's stay ends only by ``grace_s``). Returns the stays that ended."""
        for s in seen:
            if s.id == 0:
                continue
            for zone in s.zones:
                stay = self.stays.get((s.id, zone))
                if stay is None:
                    self.stays[(s.id, zone)] = Stay(s.id, zone, s.label, t, t, s.box)
                else:
                    stay.last_in, stay.box = t, s.box
        alive = set(live) if live is not None else None
        ended = [
            stay
            for stay in self.stays.values()
            if (alive is not None and stay.id not in alive) or t - stay.last_in > self.grace_s
        ]
        for stay in ended:
            del self.stays[(stay.id, stay.zone)]
        return ended

    def of(self, oid: int) -> dict[str, float]:
        """Seconds object ``oid`` has been in each zone it is staying in."""
        return {z: round(s.seconds, 3) for (i, z), s in self.stays.items() if i == oid}


@dataclass(frozen=True)
class ObjectEvent:
    """A per-object rule's event starting (the stay reached ``loiter_s``) or ending."""

    kind: Literal["start", "end"]
    rule_index: int
    stay: Stay
    end: float | None = None


@dataclass
class Loiter:
    """Per-object rules: (zone, label, loiter_s, grace_s) each, with a ``Dwell`` per rule so
    each keeps its own grace."""

    rules: Sequence[tuple[str, str, float, float]]
    dwells: list[Dwell] = field(init=False)
    announced: list[set[int]] = field(init=False)  # per rule: the ids whose event is open

    def __post_init__(self) -> None:
        self.dwells = [Dwell(grace_s=grace) for *_, grace in self.rules]
        self.announced = [set() for _ in self.rules]

    def update(
        self, seen: Sequence[Seen], t: float, live: Iterable[int] | None = None
    ) -> list[ObjectEvent]:
        out: list[ObjectEvent] = []
        alive = set(live) if live is not None else None
        for i, ((zone, label, loiter_s, _), dwell) in enumerate(
            zip(self.rules, self.dwells, strict=True)
        ):
            mine = [
                Seen(s.id, s.label, s.box, (zone,))
                for s in seen
                if s.label == label and zone in s.zones
            ]
            for stay in dwell.update(mine, t, alive):
                if stay.id in self.announced[i]:
                    self.announced[i].discard(stay.id)
                    out.append(ObjectEvent("end", i, stay, end=stay.last_in))
            for (oid, _), stay in dwell.stays.items():
                if oid not in self.announced[i] and stay.seconds >= loiter_s:
                    self.announced[i].add(oid)
                    out.append(ObjectEvent("start", i, stay))
        return out

    def finish(self) -> list[ObjectEvent]:
        """The input ended: every open event ends when its object was last seen inside."""
        out = []
        for i, dwell in enumerate(self.dwells):
            for (oid, _), stay in sorted(dwell.stays.items()):
                if oid in self.announced[i]:
                    out.append(ObjectEvent("end", i, stay, end=stay.last_in))
            dwell.stays.clear()
            self.announced[i].clear()
        return out
