"""Wiring for live cameras: a source thread per camera -> one shared inference stage -> a
frame-loop thread per camera (the same ``FrameLoop`` as a file run: record, draw, recording
segments, live view, watch rules; plus latency).

Rules on top of the file pipeline's (``worker.stages.runner``):
- nothing waits on a camera: each source reconnects on its own, and a dead or silent camera
  only ever blocks its own thread;
- queues drop their oldest frame instead of blocking (``DropOldest``), and every drop is
  counted with its reason, so ``received == processed + skipped + dropped`` once ``stop()``
  has drained the stages;
- one model session serves every camera: the inference stage batches across cameras, waiting
  at most ``batch_wait_ms`` after the first frame so a slow camera does not hold the others;
- a camera's failure is that camera's alone: its source reconnects, and if anything in its
  frame loop fails (drawing, recording, analytics) it goes to ``failed`` while the others go
  on; a failure of the shared inference stage stops the monitor (``failed``), and ``stop()``
  raises it naming the stage.

Each camera is processed as its own run description says: the monitor's, with that camera's
overrides laid over it (``per_camera``: look, encode, analytics).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from worker.description import RunDescription
from worker.errors import SettingsError, StageError, WorkerError
from worker.live.cam import Cam
from worker.live.camera import Camera, CameraSource, CameraState
from worker.models import Model
from worker.ops.zones import FrameZones
from worker.stages.analytics import check_objects, rules_for
from worker.stages.batching import run_inference
from worker.stages.channels import END, DropOldest
from worker.stages.events import EventLog
from worker.stages.frames import Item
from worker.stages.infer import Inferencer
from worker.stages.loop import FrameLoop
from worker.stages.runner import default_batch
from worker.stages.threads import Threads

__all__ = ["Monitor"]

log = logging.getLogger(__name__)

_POLL_S = 0.1
_DRAIN_S = 30.0  # how long stop() lets inference and frame loops finish what they hold
#: Events kept in memory for ``/events``.
RECENT_EVENTS = 200


def _rule_names(run: RunDescription) -> list[str]:
    return [z.name for z in run.analytics.zones]


class Monitor:
    def __init__(
        self,
        cameras: Sequence[Camera],
        model: Model,
        run: RunDescription | None = None,
        *,
        per_camera: Mapping[str, RunDescription] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``run``: how every camera is processed, and how the model runs and cameras connect
        (its speed and live sections); ``per_camera``: a camera's own description, where it
        has one. A zone or watch rule applies to the cameras its zone belongs to."""
        if not cameras:
            raise WorkerError("no camera to monitor")
        self.model = model
        self.run = run = run or RunDescription()
        self.live = run.live
        names = {c.name for c in cameras}
        per_camera = dict(per_camera or {})
        unknown = sorted(set(per_camera) - names)
        if unknown:
            raise SettingsError(
                f"camera options for '{unknown[0]}': not one of the cameras "
                f"({', '.join(sorted(names))})"
            )
        self._on_event = on_event
        self._event_lock = threading.Lock()
        self.events = 0
        #: The newest events, for the pages (the sink has them all).
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.batch = default_batch(model, run.speed.batch)
        self.cams: dict[str, Cam] = {}
        self._loops: dict[str, FrameLoop] = {}
        for c in cameras:
            cam_run = per_camera.get(c.name, run)
            _check_zone_cameras(cam_run, names)
            check_objects(cam_run.analytics, model)
            cam = self.cams[c.name] = Cam(c, cam_run, model, self.live, self.drop)
            self._loops[c.name] = cam.loop(model, self._events_for(cam))
        self.ingress = DropOldest(
            run.live.live_queue,
            self.drop,
            stream=lambda item: item.stream,
            max_age_s=run.live.max_latency_ms / 1000,
            age=lambda item: item.received_at,
        )
        self.infer = Inferencer(
            model, top_k=run.look.top_k, speed=run.speed, batch=self.batch, live=True
        )
        self.calls = 0  # model runs; frames per run = self.infer.frames / calls
        self._accepting = True
        self._accept_lock = threading.Lock()
        self.failed = threading.Event()  # a stage failed: the monitor must stop
        self._threads = Threads(self.failed, prefix="")
        self.started_at: float | None = None
        self._summary: dict[str, Any] | None = None
        self.stopping = False

    # -- bookkeeping -------------------------------------------------------------------------

    def drop(self, item: Item, reason: str) -> None:
        self.cams[item.stream].counters.drop(reason)

    def _receive(self, item: Item) -> None:
        with self._accept_lock:
            if not self._accepting:  # a source that outlived stop(): not ours to count
                return
            cam = self.cams[item.stream]
            cam.counters.receive()
            cam.last_frame_at = item.received_at
            item.skip = not cam.sampler.take(item.wall)
            if item.skip and cam.recorder is None:
                cam.counters.skip()  # nothing to record it in: done with it
            else:
                self.ingress.put(item)

    def _state(self, name: str, state: CameraState, detail: str) -> None:
        cam = self.cams[name]
        if cam.state == "failed":
            return  # final: what its source does while stopping after it is not news
        cam.state, cam.detail, cam.since = state, detail, time.monotonic()
        if state in ("stalled", "live"):
            cam.stalled = state == "stalled"
        level = logging.WARNING if state in ("stalled", "backoff", "failed") else logging.INFO
        log.log(level, "camera %s: %s%s", name, state, f" ({detail})" if detail else "")
        self._emit({"type": "camera", "camera": name, "state": state, "detail": detail})

    def _emit(self, event: dict[str, Any]) -> None:
        event.setdefault("time", round(time.time(), 3))
        with self._event_lock:
            self.events += 1
            self.recent.append(event)
            cam = self.cams.get(str(event.get("camera")))
            if cam is not None and event.get("type") == "watch":
                cam.last_event = event
            if self._on_event is None:
                return
            try:
                self._on_event(event)
            except Exception as e:  # an events sink must not stop the cameras
                log.warning("events: could not write an event (%s: %s)", type(e).__name__, e)

    def recent_events(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events, newest first."""
        with self._event_lock:
            return list(self.recent)[::-1][:limit]

    def _fail(self, stage: str, e: BaseException) -> None:
        self._threads.fail(stage, e)  # sets self.failed
        for cam in self.cams.values():
            cam.stop.set()
        self.ingress.close(drain=False)

    def _events_for(self, cam: Cam) -> EventLog:
        rules = rules_for(cam.run.analytics.watch, self.model, _rule_names(cam.run))
        names = {z.name for z in cam.zones.zones} if cam.zones else set()
        rules = [r for r in rules if r.zone is None or r.zone in names]
        rec = cam.recorder
        snapshots = None
        if rec is not None and cam.run.analytics.snapshots:
            snapshots = rec.folder / "events"  # beside the camera's recordings
        return EventLog(
            "camera",
            cam.camera.name,
            rules,
            self._emit,
            snapshots=snapshots,
            locate=rec.location if rec is not None else None,
            clock_is_wall=True,
        )

    # -- stages ------------------------------------------------------------------------------

    def _camera_thread(self, cam: Cam) -> Callable[[], None]:
        def run() -> None:
            assert cam.source is not None
            try:
                cam.source.run()
            except Exception as e:  # a bug or odd stream: this camera ends, the rest go on
                self._state(cam.camera.name, "failed", f"unexpected {type(e).__name__}")
                # The traceback helps with the bug; the URL in it must not get out.
                tb = traceback.format_exc().replace(cam.camera.url, cam.camera.shown)
                log.debug("camera %s: %s", cam.camera.name, tb)

        return run

    def _run_inference(self) -> None:
        try:
            self.calls = run_inference(
                self.ingress.get,
                self.infer,
                lambda item, answer: self.cams[item.stream].out.put((item, answer)),
                batch=self.batch,
                wait_s=self.run.speed.batch_wait_s,
                zones=self._zones_to_classify,
            )
        except BaseException as e:
            self._fail("inference", e)
        finally:
            for cam in self.cams.values():
                cam.out.close(drain=not self.failed.is_set())

    def _zones_to_classify(self, item: Item) -> FrameZones | None:
        """A classifier's zones of this camera's frame, cropped and classified in the shared
        inference stage: a zone that does not fit the frame fails its camera, not the
        stage every camera shares."""
        cam = self.cams[item.stream]
        try:
            return cam.records.zones_to_classify(item.frame)
        except Exception as e:
            cam.stop.set()
            self._state(cam.camera.name, "failed", f"zones: {_one_line(e)}")
            return None

    def _writer_thread(self, cam: Cam) -> Callable[[], None]:
        loop = self._loops[cam.camera.name]

        def run() -> None:
            broken = False  # this camera's frame loop failed: its frames are dropped from now on
            try:
                while True:
                    try:
                        got = cam.out.get(_POLL_S)
                    except queue.Empty:
                        if not broken:
                            self._close_idle(cam)
                        continue
                    if got is END:
                        break
                    item, answer = got
                    if broken:
                        self.drop(item, "camera_failed")
                        continue
                    try:
                        loop.take(item, answer)
                    except Exception as e:
                        # This camera's drawing, recording or analytics, not the others': it
                        # alone stops.
                        broken = True
                        self.drop(item, "camera_failed")
                        cam.stop.set()
                        self._salvage(cam)
                        self._state(cam.camera.name, "failed", f"writer: {_one_line(e)}")
                        tb = traceback.format_exc().replace(cam.camera.url, cam.camera.shown)
                        log.debug("camera %s: %s", cam.camera.name, tb)
                        continue
                    if answer is None:
                        cam.counters.skip()
                        continue
                    cam.latency.observe(time.monotonic() - item.received_at)
                    cam.counters.process()
            finally:
                # Another stage's failure leaves this camera's frames whole: finish the file.
                if cam.recorder is not None:
                    if broken:
                        cam.recorder.discard()
                    else:
                        cam.recorder.close()
                if not broken and loop.events is not None:
                    try:
                        loop.events.finish(time.time())
                    except Exception as e:
                        log.warning("camera %s: events: %s", cam.camera.name, _one_line(e))

        return run

    def _salvage(self, cam: Cam) -> None:
        """Keep what the open segment holds if it still closes cleanly; else drop it."""
        r = cam.recorder
        if r is None:
            return
        try:
            r.close()
        except Exception:
            r.discard()

    def _close_idle(self, cam: Cam) -> None:
        r = cam.recorder
        if r is None or not r.is_open or cam.last_frame_at is None:
            return
        # Silent past its read timeout, the camera is reconnecting: finish the file it had.
        if time.monotonic() - cam.last_frame_at > self.live.read_timeout_s + 1.0:
            r.close()

    # -- control -----------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.monotonic()
        t = self._threads
        t.add("inference", self._run_inference)
        for cam in self.cams.values():
            name = cam.camera.name
            cam.source = CameraSource(cam.camera, self._receive, self._state, self.live, cam.stop)
            cam.thread = threading.Thread(
                target=self._camera_thread(cam), name=f"camera-{name}", daemon=True
            )
            t.add(f"writer {name}", self._writer_thread(cam), name=f"writer-{name}")
        t.start()
        for cam in self.cams.values():
            assert cam.thread is not None
            cam.thread.start()

    def all_gave_up(self) -> bool:
        return all(c.state == "failed" for c in self.cams.values())

    def stats(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for name, cam in self.cams.items():
            last = cam.last_frame_at
            r = cam.recorder
            out[name] = {
                "url": cam.camera.shown,
                "state": cam.state,
                "detail": cam.detail,
                "stalled": cam.stalled,
                "state_for_s": round(now - cam.since, 3),
                **cam.counters.snapshot(),
                "connections": cam.source.generation if cam.source else 0,
                "bad_packets": cam.source.bad_packets if cam.source else 0,
                "last_frame_age_s": None if last is None else round(now - last, 3),
                "latency_ms": cam.latency.percentiles_ms(),
                # A count and the newest few: a list of every segment would grow forever.
                "segments_written": r.written if r else 0,
                "last_segments": [str(p) for p in r.last] if r else [],
            }
            if cam.records.counts_objects:  # objects in the newest frame, crossings so far
                out[name]["objects"] = dict(cam.records.last_counts)
                if cam.records.line_specs:
                    out[name]["lines"] = cam.records.line_totals()
        return out

    def stop(self) -> dict[str, Any]:
        """Stop the cameras, let inference and the frame loops finish what they hold, close
        every segment; the summary. Raises ``StageError`` if a stage failed. Safe to call
        twice."""
        if self._summary is not None:
            return self._summary
        self.stopping = True
        for cam in self.cams.values():
            cam.stop.set()
        live = self.live
        deadline = time.monotonic() + max(live.open_timeout_s, live.read_timeout_s) + 1.0
        for cam in self.cams.values():
            if cam.thread is not None and cam.thread.ident is not None:
                cam.thread.join(max(0.0, deadline - time.monotonic()))
        with self._accept_lock:
            self._accepting = False
        self.ingress.close()
        stuck = self._threads.join(_DRAIN_S)
        seconds = time.monotonic() - (self.started_at or time.monotonic())
        self._on_event = None  # a camera thread outliving stop() must not write to a closed sink
        for cam in self.cams.values():
            cam.view.close()  # the pages' streams end with the monitor
        self._threads.raise_first()
        if stuck:
            raise StageError(stuck[0], f"did not finish within {_DRAIN_S:.0f} s of stopping")
        self._summary = {
            "model": str(self.model.path),
            "task": self.model.task,
            "provider": self.model.engine.provider,
            "batch": self.batch,
            # How well batching across cameras worked: frames per model run (at most batch).
            "inference": {
                "calls": self.calls,
                "frames": self.infer.frames,
                "mean_batch": round(self.infer.frames / self.calls, 2) if self.calls else 0.0,
                **self.infer.describe(),
            },
            "seconds": round(seconds, 3),
            "events": self.events,
            "cameras": self.stats(),
        }
        return self._summary


def _check_zone_cameras(run: RunDescription, cameras: set[str]) -> None:
    for z in run.analytics.zones:
        if z.camera is not None and z.camera not in cameras:
            raise SettingsError(
                f"zone '{z.name}': camera '{z.camera}' is not one of the cameras "
                f"({', '.join(sorted(cameras))})"
            )


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
