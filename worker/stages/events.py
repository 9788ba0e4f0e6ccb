"""Events of one input or camera: the watch rules' transitions as records, with a snapshot.

An event record carries where it happened (``input`` or ``camera``, ``zone``, ``label``,
``rule``), when (``start`` and, on the end record, ``end``, in the times the caller gives:
video seconds for files, wall-clock seconds for cameras), its ``peak`` value and
``peak_time``, and on the end record the ``snapshot``: the annotated frame at the peak, as a
JPEG written into ``snapshots`` (the folder beside the outputs or recordings), and the
``recording`` (file and offset) where the event starts, when the caller can say.

The peak frame's picture is copied when the peak rises and encoded once, when the event ends:
a rising value over many frames costs copies, not JPEG encodes.

Per-object rules (``door:person loiter=30s``) make one event per tracked object: it starts
when the object has stayed ``loiter`` seconds in the zone (the record's ``start`` is when it
entered, ``id`` its track) and ends when its stay ends. Both records carry the ``snapshot``
(the annotated frame at the start) and the ``crop`` (the object cut from the decoded frame,
with a margin), written when the event starts: an alert can show them at once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    from worker.ops.dwell import Loiter, ObjectEvent
    from worker.ops.rules import Rule, Tracker, Transition

__all__ = ["EventLog"]

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
#: Where a time is recorded: {"file": ..., "offset_s": ...} or None.
Locate = Callable[[float], dict[str, Any] | None]
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class EventLog:
    """The rules of one source (``kind`` "input" or "camera", named ``name``)."""

    def __init__(
        self,
        kind: Literal["input", "camera"],
        name: str,
        rules: Sequence[Rule],
        emit: Callable[[dict[str, Any]], None] | None,
        *,
        snapshots: Path | None = None,
        locate: Locate | None = None,
        jpeg_quality: int = 85,
        clock_is_wall: bool = False,
    ) -> None:
        self.kind, self.name = kind, name
        # The rules' modules are imported only where there are rules: 5 ms of every start.
        self.tracker: Tracker | None = None
        self.loiter: Loiter | None = None
        self.each = [r for r in rules if r.each]
        if rules:
            from worker.ops.rules import Tracker

            self.tracker = Tracker(rules)  # it leaves the per-object rules alone
        if self.each:
            from worker.ops.dwell import Loiter

            self.loiter = Loiter(
                [(r.zone or "", r.label, r.loiter_s, r.end_s or 1.0) for r in self.each]
            )
        self._shots: dict[tuple[int, int], dict[str, Any]] = {}  # (rule, id) -> paths, where
        self.emit = emit
        self.snapshots = snapshots
        self.locate = locate
        self.quality = jpeg_quality
        self.clock_is_wall = clock_is_wall
        self._pictures: dict[int, Array] = {}  # rule index -> the peak frame's picture
        self._starts: dict[int, dict[str, Any] | None] = {}  # rule index -> recording location
        self.started = 0
        self.ended = 0
        self.written: list[Path] = []

    def __bool__(self) -> bool:
        return self.tracker is not None

    @property
    def dropped(self) -> int:
        return self.tracker.dropped if self.tracker is not None else 0

    def update(
        self,
        record: dict[str, Any],
        t: float,
        picture: Callable[[], Array],
        image: Array | None = None,
    ) -> None:
        """One processed frame: its record, its time, how to get its annotated picture (asked
        for only when the frame is a new peak, or an object starts loitering) and the decoded
        frame (``image``: per-object events crop the object from it)."""
        if self.tracker is None:
            return
        for tr in self.tracker.update(record, t):
            self._handle(tr, picture)
        if self.loiter is not None:
            from worker.ops.dwell import seen_in

            for ev in self.loiter.update(seen_in(record.get("objects", ())), t):
                self._object(ev, picture, image)

    def finish(self, t: float) -> None:
        """The source ended at ``t``: close every open event."""
        if self.tracker is None:
            return
        for tr in self.tracker.finish(t):
            self._handle(tr, None)
        if self.loiter is not None:
            for ev in self.loiter.finish():
                self._object(ev, None, None)

    def _object(
        self, ev: ObjectEvent, picture: Callable[[], Array] | None, image: Array | None
    ) -> None:
        rule, stay = self.each[ev.rule_index], ev.stay
        key = (ev.rule_index, stay.id)
        r: dict[str, Any] = {
            "type": "watch",
            "event": ev.kind,
            self.kind: self.name,
            "zone": stay.zone,
            "label": stay.label,
            "rule": rule.text,
            "id": stay.id,
            "start": round(stay.enter, 3),
        }
        if ev.kind == "start":
            self.started += 1
            extra: dict[str, Any] = {}
            where = self.locate(stay.enter) if self.locate else None
            if where is not None:
                extra["recording"] = where
            if self.snapshots is not None and picture is not None:
                stem = self._stem(stay.enter, stay.zone, f"{stay.label}-{stay.id}")
                extra["snapshot"] = self._jpeg(stem + ".jpg", picture())
                if image is not None:
                    extra["crop"] = self._jpeg(stem + "-crop.jpg", _crop(image, stay.box))
            self._shots[key] = extra
            r["dwell_s"] = round(stay.seconds, 3)
            r |= extra
        else:
            self.ended += 1
            r["end"] = round(ev.end if ev.end is not None else stay.last_in, 3)
            r["duration_s"] = round(r["end"] - stay.enter, 3)
            r |= self._shots.pop(key, {})
        if not self.clock_is_wall:
            r["time"] = round(time.time(), 3)
        self._send(r)

    def _handle(self, tr: Transition, picture: Callable[[], Array] | None) -> None:
        if tr.kind == "peak":
            if picture is not None and self.snapshots is not None:
                self._pictures[tr.index] = np.array(picture(), copy=True)
            return
        if tr.kind == "start":
            self.started += 1
            self._starts[tr.index] = self.locate(tr.start) if self.locate else None
            self._send(self._record("start", tr))
            return
        self.ended += 1
        record = self._record("end", tr)
        shot = self._pictures.pop(tr.index, None)
        if shot is not None:
            record["snapshot"] = self._snapshot(tr, shot)
        self._send(record)
        self._starts.pop(tr.index, None)

    def _record(self, kind: str, tr: Transition) -> dict[str, Any]:
        r: dict[str, Any] = {
            "type": "watch",
            "event": kind,
            self.kind: self.name,
            "zone": tr.rule.zone,
            "label": tr.rule.label,
            "rule": tr.rule.text,
            "start": round(tr.start, 3),
            "peak": round(tr.peak, 6),
            "peak_time": round(tr.peak_time, 3),
            "peak_frame": tr.peak_frame,
        }
        if tr.end is not None:
            r["end"] = round(tr.end, 3)
            r["duration_s"] = round(tr.end - tr.start, 3)
        where = self._starts.get(tr.index)
        if where is not None:
            r["recording"] = where
        if not self.clock_is_wall:
            r["time"] = round(time.time(), 3)
        return r

    def _stem(self, start: float, zone: str | None, what: str) -> str:
        stamp = (
            time.strftime("%Y%m%dT%H%M%S", time.gmtime(start)) + "Z"
            if self.clock_is_wall
            else f"{start:09.3f}s"
        )
        scope = f"{zone}-" if zone else ""
        return _SAFE.sub("_", f"{self.name}-{stamp}-{scope}{what}")

    def _snapshot(self, tr: Transition, picture: Array) -> str | None:
        return self._jpeg(self._stem(tr.start, tr.rule.zone, tr.rule.label) + ".jpg", picture)

    def _jpeg(self, name: str, picture: Array) -> str | None:
        assert self.snapshots is not None
        path = self.snapshots / name
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        try:
            self.snapshots.mkdir(parents=True, exist_ok=True)
            # Written whole under a temporary name, then renamed: a reader never sees half.
            tmp = path.with_name(f".{path.name}.part")
            tmp.write_bytes(data.tobytes())
            tmp.replace(path)
        except OSError as e:
            log.warning("events: snapshot %s not written (%s)", path, e.strerror or e)
            return None
        self.written.append(path)
        return str(path)

    def _send(self, record: dict[str, Any]) -> None:
        if self.emit is not None:
            self.emit(record)


def _crop(image: Array, box: tuple[float, float, float, float], margin: float = 0.1) -> Array:
    """``box`` cut from ``image`` with ``margin`` of its size around it (inside the frame; at
    least one pixel)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right = min(w, max(left + 1, int(np.ceil(x2 + mx))))
    bottom = min(h, max(top + 1, int(np.ceil(y2 + my))))
    return image[top:bottom, left:right]
