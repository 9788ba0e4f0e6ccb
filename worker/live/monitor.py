"""Wiring for live cameras: a source thread per camera -> one shared inference stage ->
a writer thread per camera (annotate, record segments, watch rules, measure latency).

Rules on top of the file pipeline's (``runner``):
- nothing waits on a camera: each source reconnects on its own, and a dead or silent camera
  only ever blocks its own thread;
- queues drop their oldest frame instead of blocking, and every drop is counted with its
  reason, so ``received == processed + dropped`` once ``stop()`` has drained the stages;
- one model session serves every camera: the inference stage batches across cameras, waiting
  at most ``batch_wait_s`` after the first frame so a slow camera does not hold the others;
- a camera's failure is that camera's alone: its source reconnects, and if drawing or
  recording its frames fails it goes to ``failed`` while the others go on; a failure of the
  shared inference stage (or a bug in a writer's loop) stops the monitor (``failed``), and
  ``stop()`` raises it naming the stage.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import StageError, WorkerError
from worker.live.camera import Camera, CameraSource, CameraState, ConnectOptions
from worker.live.queues import Counters, DropQueue, Ingress, LatencyStats, LiveFrame
from worker.live.segments import SegmentRecorder
from worker.models import Model
from worker.ops.rules import Rule
from worker.ops.sampling import Sampler
from worker.ops.zones import ZoneSet
from worker.stages.events import EventLog
from worker.stages.frames import Answer
from worker.stages.infer import Inferencer, infer_frames
from worker.stages.runner import default_batch
from worker.stages.speed import Speed
from worker.stages.writer import Annotator
from worker.web.mjpeg import Broadcast

__all__ = ["Monitor", "MonitorOptions"]

log = logging.getLogger(__name__)

_POLL_S = 0.1
_DRAIN_S = 30.0  # how long stop() lets inference and writers finish what they hold
#: Events kept in memory for ``/events``.
RECENT_EVENTS = 200


@dataclass(frozen=True)
class MonitorOptions:
    batch: int = 0  # 0: the graph's fixed batch, else per provider
    batch_wait_s: float = 0.04
    max_latency_s: float | None = 0.5  # frames older than this when inference is free: dropped
    live_queue: int = 2  # frames per camera waiting for inference
    writer_queue: int = 8  # frames per camera waiting to be drawn and encoded
    alpha: float = 0.5
    top_k: int = 5
    preset: str = "ultrafast"
    crf: int = 23
    record: Path | None = None
    segment_s: float = 60.0
    every: int = 1  # run every Nth frame of a camera; the others are recorded, not dropped
    fps: float | None = None  # run at most this many frames per second of each camera
    draw_zones: bool = True
    snapshots: bool = True  # events: a JPEG of the peak frame, beside the recordings
    ui_fps: float = 5.0  # the live view: annotated frames per second, while someone watches
    jpeg_quality: int = 80
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    speed: Speed = field(default_factory=Speed)


class _Cam:
    """Everything the monitor keeps for one camera."""

    def __init__(
        self,
        camera: Camera,
        opts: MonitorOptions,
        on_drop: Callable[[Any], None],
        model: Model,
        zones: ZoneSet | None,
    ):
        self.camera = camera
        self.annotate = Annotator(model, opts.alpha, zones, draw_zones=opts.draw_zones)
        self.sampler = Sampler(opts.every, opts.fps)
        self.counters = Counters()
        self.latency = LatencyStats()
        self.state: CameraState = "connecting"
        # Silent past the read timeout, and not live again since: while it reconnects
        # (backoff, connecting) it is still a stalled camera to whoever looks at it.
        self.stalled = False
        self.detail = ""
        self.since = time.monotonic()
        self.last_frame_at: float | None = None
        self.frame_hw: tuple[int, int] | None = None  # of the newest processed frame
        self.last_event: dict[str, Any] | None = None  # the newest watch event
        self.view = Broadcast(opts.ui_fps, opts.jpeg_quality)
        self.out = DropQueue(opts.writer_queue, on_drop)
        self.recorder: SegmentRecorder | None = None
        if opts.record is not None:
            self.recorder = SegmentRecorder(
                opts.record,
                camera.name,
                seconds=opts.segment_s,
                preset=opts.preset,
                crf=opts.crf,
                encoder=opts.speed.encoder,
            )
        self.stop = threading.Event()  # this camera's source only
        self.source: CameraSource | None = None
        self.thread: threading.Thread | None = None
        self.writer: threading.Thread | None = None


class Monitor:
    def __init__(
        self,
        cameras: Sequence[Camera],
        model: Model,
        options: MonitorOptions | None = None,
        *,
        rules: Sequence[Rule] = (),
        on_event: Callable[[dict[str, Any]], None] | None = None,
        zones: Mapping[str, ZoneSet | None] | None = None,
    ) -> None:
        """``rules`` apply to every camera that has the rule's zone (a rule without one, to
        every camera); ``zones``: per camera name."""
        if not cameras:
            raise WorkerError("no camera to monitor")
        self.model = model
        self.options = o = options or MonitorOptions()
        self.rules = list(rules)
        self.zones = dict(zones or {})
        self._on_event = on_event
        self._event_lock = threading.Lock()
        self.events = 0
        #: The newest events, for the pages (the sink has them all).
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.batch = default_batch(model, o.batch)
        self.calls = 0  # model runs; frames per run = self.infer.frames / calls
        self.cams = {
            c.name: _Cam(
                c,
                o,
                lambda pair: self._drop(pair[0], "writer_behind"),
                model,
                self.zones.get(c.name),
            )
            for c in cameras
        }
        self.ingress = Ingress(o.live_queue, o.max_latency_s, self._drop)
        self.infer = Inferencer(model, top_k=o.top_k, speed=o.speed, batch=self.batch)
        self._sources_done = threading.Event()
        self._inference_done = threading.Event()
        self._accepting = True
        self._accept_lock = threading.Lock()
        self.failed = threading.Event()
        self._failures: list[tuple[str, BaseException]] = []
        self._inference: threading.Thread | None = None
        self.started_at: float | None = None
        self._summary: dict[str, Any] | None = None
        self.stopping = False

    # -- bookkeeping -------------------------------------------------------------------------

    def _drop(self, item: LiveFrame, reason: str) -> None:
        self.cams[item.camera].counters.drop(reason)

    def _receive(self, item: LiveFrame) -> None:
        with self._accept_lock:
            if not self._accepting:  # a source that outlived stop(): not ours to count
                return
            cam = self.cams[item.camera]
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
        self._failures.append((stage, e))
        self.failed.set()
        for cam in self.cams.values():
            cam.stop.set()

    # -- stages ------------------------------------------------------------------------------

    def _camera_thread(self, cam: _Cam) -> Callable[[], None]:
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
        o = self.options
        try:
            while not self.failed.is_set():
                items = self.ingress.take(self.batch, _POLL_S, o.batch_wait_s)
                if not items:
                    if self._sources_done.is_set() and len(self.ingress) == 0:
                        break
                    continue
                run = [i for i in items if not i.skip]
                zones = [self.cams[i.camera].annotate.frame_zones_or_none(i.frame) for i in run]
                answers = iter(
                    infer_frames(self.infer, [i.frame.image for i in run], zones) if run else []
                )
                if run:
                    self.calls += 1
                for item in items:  # in order: a skipped frame goes where it came
                    self.cams[item.camera].out.put((item, None if item.skip else next(answers)))
        except BaseException as e:
            self._fail("inference", e)
        finally:
            self._inference_done.set()

    def _events_for(self, cam: _Cam) -> EventLog:
        o = self.options
        names = {z.name for z in cam.annotate.zones.zones} if cam.annotate.zones else set()
        rules = [r for r in self.rules if r.zone is None or r.zone in names]
        rec = cam.recorder
        snapshots = None
        if rec is not None and o.snapshots:
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

    def _writer_thread(self, cam: _Cam) -> Callable[[], None]:
        annotate = cam.annotate
        events = self._events_for(cam)

        def run() -> None:
            broken = False  # this camera's writing failed: its frames are dropped from now on
            last: Answer | None = None  # what frames skipped on purpose are drawn with
            try:
                while not self.failed.is_set():
                    try:
                        item, answer = cam.out.get(_POLL_S)
                    except queue.Empty:
                        if self._inference_done.is_set() and len(cam.out) == 0:
                            break
                        if not broken:
                            self._close_idle(cam)
                        continue
                    if broken:
                        self._drop(item, "camera_failed")
                        continue
                    try:
                        if answer is None:  # skipped on purpose (--every, --fps): record it
                            if cam.recorder is not None:
                                image = (
                                    annotate.draw(item.frame, last) if last else item.frame.image
                                )
                                cam.recorder.write(item, image)
                            cam.counters.skip()
                            continue
                        last = answer
                        record = annotate.record(item.frame, answer)

                        def picture(
                            it: LiveFrame = item,
                            a: Answer = answer,
                            drawn: list[Any] = [],  # noqa: B006
                        ) -> Any:
                            if not drawn:  # drawn once per frame, if anything asks
                                drawn.append(annotate.draw(it.frame, a))
                            return drawn[0]

                        if cam.recorder is not None:
                            cam.recorder.write(item, picture())
                        cam.frame_hw = item.frame.image.shape[:2]
                        cam.view.offer(picture)
                    except Exception as e:
                        # This camera's stream or recording, not the others': it alone stops.
                        broken = True
                        self._drop(item, "camera_failed")
                        cam.stop.set()
                        self._salvage(cam)
                        self._state(cam.camera.name, "failed", f"writer: {_one_line(e)}")
                        continue
                    events.update(record, item.wall, picture)
                    cam.latency.observe(time.monotonic() - item.received_at)
                    cam.counters.process()
            except BaseException as e:
                broken = True
                self._fail(f"writer {cam.camera.name}", e)
            finally:
                # Another stage's failure leaves this camera's frames whole: finish the file.
                if cam.recorder is not None:
                    if broken:
                        cam.recorder.discard()
                    else:
                        cam.recorder.close()
                if not broken:
                    with contextlib.suppress(Exception):
                        events.finish(time.time())

        return run

    def _salvage(self, cam: _Cam) -> None:
        """Keep what the open segment holds if it still closes cleanly; else drop it."""
        r = cam.recorder
        if r is None:
            return
        try:
            r.close()
        except Exception:
            r.discard()

    def _close_idle(self, cam: _Cam) -> None:
        r = cam.recorder
        if r is None or not r.is_open or cam.last_frame_at is None:
            return
        # Silent past its read timeout, the camera is reconnecting: finish the file it had.
        if time.monotonic() - cam.last_frame_at > self.options.connect.read_timeout_s + 1.0:
            r.close()

    # -- control -----------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.monotonic()
        for cam in self.cams.values():
            cam.source = CameraSource(
                cam.camera, self._receive, self._state, self.options.connect, cam.stop
            )
            name = cam.camera.name
            cam.thread = threading.Thread(
                target=self._camera_thread(cam), name=f"camera-{name}", daemon=True
            )
            cam.writer = threading.Thread(
                target=self._writer_thread(cam), name=f"writer-{name}", daemon=True
            )
        self._inference = threading.Thread(
            target=self._run_inference, name="inference", daemon=True
        )
        self._inference.start()
        for cam in self.cams.values():
            assert cam.writer is not None and cam.thread is not None
            cam.writer.start()
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
        return out

    def stop(self) -> dict[str, Any]:
        """Stop the cameras, let inference and writers finish what they hold, close every
        segment; the summary. Raises ``StageError`` if a stage failed. Safe to call twice."""
        if self._summary is not None:
            return self._summary
        self.stopping = True
        for cam in self.cams.values():
            cam.stop.set()
        c = self.options.connect
        deadline = time.monotonic() + max(c.open_timeout_s, c.read_timeout_s) + 1.0
        for cam in self.cams.values():
            if cam.thread is not None and cam.thread.ident is not None:
                cam.thread.join(max(0.0, deadline - time.monotonic()))
        with self._accept_lock:
            self._accepting = False
        self._sources_done.set()
        deadline = time.monotonic() + _DRAIN_S
        threads = [self._inference] + [cam.writer for cam in self.cams.values()]
        for t in threads:
            if t is not None and t.ident is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t is not None and t.is_alive()]
        seconds = time.monotonic() - (self.started_at or time.monotonic())
        self._on_event = None  # a camera thread outliving stop() must not write to a closed sink
        for cam in self.cams.values():
            cam.view.close()  # the pages' streams end with the monitor
        if self._failures:
            stage, err = self._failures[0]
            if isinstance(err, WorkerError):
                raise err
            raise StageError(stage, f"{type(err).__name__}: {err}") from err
        if stuck:
            raise StageError(stuck[0], f"did not finish within {_DRAIN_S:.0f} s of stopping")
        cams = self.stats()
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
            "cameras": cams,
        }
        return self._summary


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
