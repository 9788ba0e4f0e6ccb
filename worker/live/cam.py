"""What the monitor keeps for one camera (``Cam``): its state, counters, queue to its frame
loop, recorder, zones and live view; and the frame loop's output that feeds that view."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from worker.description import Live, RunDescription
from worker.live.camera import Camera, CameraSource, CameraState
from worker.live.counters import Counters, LatencyStats
from worker.live.segments import SegmentRecorder
from worker.models import Model
from worker.ops.sampling import Sampler
from worker.stages.analytics import lines_for, zones_for
from worker.stages.channels import DropOldest
from worker.stages.events import EventLog
from worker.stages.frames import Answer, Item
from worker.stages.loop import FrameLoop, Output, Picture, Record
from worker.stages.painters import painters_for
from worker.stages.records import MaskMaps, Recorder
from worker.web.mjpeg import Broadcast

__all__ = ["Cam", "View"]


class Cam:
    """Everything the monitor keeps for one camera."""

    def __init__(
        self,
        camera: Camera,
        run: RunDescription,
        model: Model,
        live: Live,
        drop: Callable[[Item, str], None],
    ) -> None:
        self.camera = camera
        self.run = run
        self.sampler = Sampler(run.analytics.every, run.analytics.fps)
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
        self.view = Broadcast(live.ui_fps, live.jpeg_quality)
        self.out = DropOldest(live.writer_queue, lambda pair, why: drop(pair[0], why),
                              full="writer_behind")  # fmt: skip
        self.recorder: SegmentRecorder | None = None
        if live.record is not None:
            self.recorder = SegmentRecorder(
                live.record, camera.name, seconds=live.segment_seconds, encode=run.encode
            )
        self.zones = zones_for(run.analytics.zones, camera.name)
        lines = lines_for(run.analytics.lines, camera.name)
        self.records = Recorder(model, self.zones, MaskMaps(model), run.analytics, lines)
        self.stop = threading.Event()  # this camera's source only
        self.source: CameraSource | None = None
        self.thread: threading.Thread | None = None
        self.writer: threading.Thread | None = None

    def loop(self, model: Model, events: EventLog) -> FrameLoop:
        outputs: list[Output] = [View(self)]
        if self.recorder is not None:
            outputs.insert(0, self.recorder)
        painters = painters_for(model, self.run.look, self.records)
        return FrameLoop(self.records, painters, outputs, events, when=lambda item: item.wall)


class View(Output):
    """The live view: the newest annotated frame for the pages, while someone watches."""

    def __init__(self, cam: Cam) -> None:
        self.cam = cam

    def processed(self, item: Item, answer: Answer, record: Record, picture: Picture) -> None:
        self.cam.frame_hw = item.frame.image.shape[:2]
        self.cam.view.offer(picture)
