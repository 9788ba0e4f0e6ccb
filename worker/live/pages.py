"""The monitor's pages on its ``/metrics`` port: the camera grid, the events, and the files
they show.

- ``/`` and ``/events``: the pages (``worker/web/assets``);
- ``/api/cameras``: each camera's state, counters, latency, zones (as fractions of the frame,
  for the outline over the picture), frame size and last event;
- ``/api/events?limit=N``: the newest events, each with the URLs of its snapshot and recording;
- ``/cameras/<name>/live.mjpg`` and ``/cameras/<name>/latest.jpg``: the annotated picture;
- ``/snapshots/<name>/<file>`` and ``/recordings/<name>/<file>``: files under the recording
  folder, and only there: the camera must be one of ours, the file a plain name of the kind
  expected (``.jpg``, ``.mp4``), and the resolved path (symlinks followed) inside that
  camera's folder.

Every camera URL shown is redacted (``Camera.shown``), as in ``/metrics``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from worker.live.monitor import Monitor
from worker.ops.zones import ZoneSet
from worker.web import (
    Request,
    Response,
    Router,
    asset_routes,
    child,
    file_response,
    json_response,
    not_found,
    page,
)
from worker.web.mjpeg import BOUNDARY

__all__ = ["camera_condition", "event_links", "monitor_routes", "zone_outlines"]

_EVENTS_MAX = 200


def zone_outlines(zones: ZoneSet | None, frame_hw: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The zones as polygons in fractions of the frame (what the page draws over the picture);
    pixel zones need the frame size, and are left out until a frame gave it."""
    out: list[dict[str, Any]] = []
    for z in zones.zones if zones else ():
        if z.units == "fraction":
            points = [[round(x, 5), round(y, 5)] for x, y in z.points]
        elif frame_hw is not None:
            h, w = frame_hw
            points = [[round(x / w, 5), round(y / h, 5)] for x, y in z.points]
        else:
            continue
        out.append({"name": z.name, "points": points})
    return out


def camera_condition(s: dict[str, Any], now: float) -> dict[str, Any]:
    """What a person should read off a camera's facts (``Monitor.stats``): ``condition``
    "live", "connecting" (before its first frame), "offline" or "stopped"; the ``reason``
    in words; since when it is offline (wall-clock: its last frame, else when it went so)."""
    state, detail = s.get("state"), s.get("detail") or ""
    stalled = bool(s.get("stalled"))
    age = s.get("last_frame_age_s")
    last_frame_at = None if age is None else round(now - age, 3)
    out: dict[str, Any] = {"last_frame_at": last_frame_at, "offline_since": None}
    if state == "live" and not stalled:
        return {**out, "condition": "live", "reason": ""}
    if state == "stopped":
        return {**out, "condition": "stopped", "reason": "the monitor is stopping"}
    if state == "connecting" and not stalled and last_frame_at is None:
        return {**out, "condition": "connecting", "reason": "no frame yet"}
    if stalled:
        reason = f"the camera sends nothing ({detail or 'stalled'})"
        if state in ("backoff", "connecting"):
            reason = "the camera sent nothing; reconnecting"
    elif state == "failed":
        reason = f"stopped trying: {detail}" if detail else "stopped trying"
    elif state == "backoff":
        reason = f"connection lost: {detail}" if detail else "connection lost"
    else:
        reason = "reconnecting"
    since = last_frame_at if last_frame_at is not None else now - (s.get("state_for_s") or 0)
    return {**out, "condition": "offline", "reason": reason, "offline_since": round(since, 3)}


def event_links(
    event: dict[str, Any], record: Path | None, parts: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The event with ``snapshot_url``, ``recording_url`` and ``recording_offset_s`` added
    where its files lie in the camera's folder under ``record``; file paths are left out.
    ``parts``: the segments it spans (``SegmentRecorder.parts``), as ``recording_parts``
    (each ``url``, ``from_s``, ``until_s``, ``ready``), to play it across segments."""
    out = {k: v for k, v in event.items() if k not in ("snapshot", "recording")}
    cam = event.get("camera")
    if record is None or not isinstance(cam, str):
        return out
    shot = event.get("snapshot")
    if isinstance(shot, str):
        p = Path(shot)
        if p.parent.name == "events" and p.parent.parent.name == cam:
            out["snapshot_url"] = f"/snapshots/{cam}/{p.name}"
    where = event.get("recording")
    if isinstance(where, dict) and isinstance(where.get("file"), str):
        p = Path(where["file"])
        if p.parent.name == cam:
            out["recording_url"] = f"/recordings/{cam}/{p.name}"
            out["recording_offset_s"] = where.get("offset_s", 0)
            # The segment an event starts in is renamed into place when it closes.
            out["recording_ready"] = p.is_file()
    if parts:
        out["recording_parts"] = [
            {**{k: v for k, v in part.items() if k != "file"},
             "url": f"/recordings/{cam}/{Path(part['file']).name}"}
            for part in parts
            if Path(part["file"]).parent.name == cam
        ]  # fmt: skip
    return out


def _event_parts(monitor: Monitor, event: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The segments a watch event spans (to its end, or to now while it goes on)."""
    name = event.get("camera")
    cam = monitor.cams.get(name) if isinstance(name, str) else None
    start = event.get("start")
    if cam is None or cam.recorder is None or not isinstance(start, (int, float)):
        return None
    end = event.get("end") if event.get("event") == "end" else None
    return cam.recorder.parts(start, end if isinstance(end, (int, float)) else None)


def monitor_routes(monitor: Monitor, router: Router | None = None) -> Router:
    routes = router or Router()
    record = monitor.live.record
    asset_routes(routes)
    routes.add("/", lambda _: page("monitor.html"))
    routes.add("/events", lambda _: page("events.html"))

    def cameras(_: Request) -> Response:
        stats = monitor.stats()
        now = time.time()
        for name, s in stats.items():
            s.update(camera_condition(s, now))
            cam = monitor.cams[name]
            s.pop("last_segments", None)  # paths on the worker's disk: not the page's business
            s["frame"] = list(cam.frame_hw[::-1]) if cam.frame_hw else None  # [w, h]
            s["zones"] = zone_outlines(cam.zones, cam.frame_hw)
            s["last_event"] = event_links(cam.last_event, record) if cam.last_event else None
            s["viewers"] = cam.view.viewers
        return json_response({"cameras": stats})

    def events(req: Request) -> Response:
        try:
            limit = max(1, min(_EVENTS_MAX, int(req.arg("limit") or 100)))
        except ValueError:
            return Response(400, b"limit: expected a whole number\n")
        recent = monitor.recent_events(limit)
        return json_response(
            {"events": [event_links(e, record, _event_parts(monitor, e)) for e in recent]}
        )

    def camera(req: Request) -> Response:
        if len(req.segments) != 2 or req.segments[0] not in monitor.cams:
            return not_found()
        name, what = req.segments
        view = monitor.cams[name].view
        if what == "live.mjpg":
            return Response(
                200,
                content_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                stream=view.stream(),
            )
        if what == "latest.jpg":
            jpeg = view.latest(wait_s=2.0)
            if jpeg is None:
                return Response(503, b"no frame yet\n", headers={"Retry-After": "1"})
            return Response(200, jpeg, "image/jpeg")
        return not_found()

    def stored(kind: str, suffix: str, *sub: str) -> Any:
        def handler(req: Request) -> Response:
            if record is None or len(req.segments) != 2 or req.segments[0] not in monitor.cams:
                return not_found()
            name, file = req.segments
            folder = child(record, name, *sub)
            path = child(folder, file) if folder is not None else None
            if path is None or path.suffix != suffix or not path.is_file():
                return not_found(f"no such {kind}")
            return file_response(path, req)

        return handler

    routes.add("/api/cameras", cameras)
    routes.add("/api/events", events)
    routes.add("/cameras/", camera)
    routes.add("/snapshots/", stored("snapshot", ".jpg", "events"))
    routes.add("/recordings/", stored("recording", ".mp4"))
    return routes
