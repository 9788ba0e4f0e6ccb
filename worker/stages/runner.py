"""A file run: source -> inference -> frame loop, one thread each, joined by lossless queues.

- every wait on a queue is a short slice that checks the shared stop flag (``Lossless``), so
  a failure anywhere, Ctrl-C or a cancel request stops every stage promptly;
- the first exception is kept and re-raised in the caller's thread, naming its stage
  (``Threads``);
- outputs are committed (renamed into place) only when every stage finished cleanly.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from worker.description import RunDescription
from worker.errors import Cancelled, InputError, OutputError, SettingsError, StageError
from worker.messages import plural
from worker.models import Model
from worker.ops.sampling import Sampler
from worker.signals import held, stop_on_signals
from worker.stages.analytics import check_objects, lines_for, rules_for, zones_for
from worker.stages.atomic import AtomicFile
from worker.stages.batching import run_inference
from worker.stages.channels import END, Lossless
from worker.stages.frames import Answer, Item
from worker.stages.infer import Inferencer
from worker.stages.loop import FrameLoop
from worker.stages.painters import painters_for
from worker.stages.records import MaskMaps, Recorder
from worker.stages.sidecars import SidecarPaths, Sidecars
from worker.stages.source import VideoSource
from worker.stages.threads import Threads
from worker.stages.writer import ResultsWriter, VideoWriter

__all__ = ["RunSummary", "default_batch", "open_source", "plan_outputs", "run_file"]

log = logging.getLogger(__name__)

_JOIN_GRACE_S = 10.0

Emit = Callable[[dict[str, Any]], None]


@dataclass
class RunSummary:
    input: str
    output: str | None  # None: --output none (results and events only)
    results: str
    model: str
    task: str
    provider: str
    batch: int
    frames: int = 0  # decoded (and written to the video, if any)
    processed: int = 0  # run through the model (--every, --fps skip the others)
    frames_expected: int | None = None  # what the container header announces, if it does
    truncated: bool = False  # ended early, or in a cut-off frame (see VideoSource)
    bad_packets: int = 0
    damaged_frames: int = 0  # of bad_packets: pictures the decoder could only partly decode
    timestamps_fixed: int = 0  # frames retimed: their timestamps went backwards or repeated
    seconds: float = 0.0
    fps: float = 0.0
    totals: dict[str, float] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)  # regions: the most in one frame
    events: dict[str, Any] = field(default_factory=dict)  # started, ended, dropped, snapshots
    files: dict[str, str | None] = field(default_factory=dict)  # masks, events, picture, ...
    pipeline: dict[str, Any] = field(default_factory=dict)  # fused?, decoder, encoder, bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_device(path: Path) -> bool:
    """A FIFO or a character device (/dev/null): written straight through, shareable."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def default_batch(model: Model, requested: int = 0) -> int:
    """Frames per inference call: the graph's if fixed, else the request, else per provider."""
    if model.batch is not None:
        return model.batch
    if requested:
        return requested
    # On a CPU a batch buys no speed (measured: batch 1, 2 and 4 within noise of each other on
    # 512x512 and 736x1280 models) and costs memory: activations for every frame at once
    # (peak RSS 272 vs 381 MiB at 512x512, 415 vs 770 MiB at 736x1280). On a GPU it fills
    # the device.
    return 8 if model.engine.device == "cuda" else 1


def plan_outputs(
    input: Path,
    output: Path | None,
    results: Path,
    run: RunDescription,
    *,
    events: Path | None = None,
    rules: bool | None = None,
) -> SidecarPaths:
    """Where a run's files go, checked against each other and the input before anything is
    written: none may be the input, no two the same (a FIFO or a device excepted: it is
    written through). ``events``: a file the events are appended to (``--events``)."""
    if output is not None and str(output) == "-":
        raise OutputError(
            "output '-': the video cannot go to stdout (use --results - for the JSON lines); "
            "give a file, a FIFO or /dev/null"
        )
    rules = bool(run.analytics.watch) if rules is None else rules
    paths = SidecarPaths.plan(
        run.analytics, results=results, output=output, rules=rules,
        events_elsewhere=events is not None,
    )  # fmt: skip
    named: list[tuple[str, Path]] = [
        (what, p)
        for what, p in (
            ("output", output),
            ("results", results),
            ("events", events),
            ("events file", paths.events_file),
            ("masks", paths.masks if isinstance(paths.masks, Path) else None),
            ("snapshots", paths.snapshots),
            ("picture", paths.picture),
            ("tracks", paths.tracks),
        )
        if p is not None and str(p) != "-"
    ]
    source = input.resolve()
    seen: dict[Path, str] = {}
    for what, path in named:
        real = path.resolve()
        if real == source:
            raise OutputError(f"{what} '{path}': would overwrite the input")
        if real in seen and not _is_device(path):
            other = "output video" if seen[real] == "output" else seen[real]
            raise OutputError(f"{what} '{path}': same path as the {other}")
        seen.setdefault(real, what)
    return paths


def open_source(
    input: Path, run: RunDescription | None = None, max_frames: int | None = None
) -> VideoSource:
    """The decoder ``run_file`` opens for ``input`` (InputError for a missing, unreadable or
    non-video file), for a caller that checks the input first and hands it the source."""
    speed = (run or RunDescription()).speed
    return VideoSource(
        input, max_frames=max_frames, threads=speed.decode_threads, hw_decode=speed.hw_decode
    )


def run_file(
    input: Path | VideoSource,
    model: Model,
    run: RunDescription | None = None,
    *,
    output: Path | None,
    results: Path,
    max_frames: int | None = None,
    emit: Emit | None = None,
    events_file: bool = True,
    progress: bool = False,
    on_frame: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    before_commit: Callable[[], None] | None = None,
) -> RunSummary:
    """Process one video file as ``run`` describes; returns the summary or raises a
    ``WorkerError``.

    ``input``: the file, or its source from ``open_source`` (with the same ``run`` and
    ``max_frames``), which stays the caller's to close: the CLI opens it before the model
    loads, so that a bad input is said first, and FFmpeg reads the file's start once, not
    twice (9 ms at 720p).

    ``output=None`` encodes no video (results, events and the other extras only). Watch
    events go to ``emit`` as they happen and, if ``events_file``, to a file beside the
    results. ``before_commit`` runs after the last frame, before the outputs are renamed into
    place; if it raises, nothing is published (the job queue checks there that it still holds
    the job).
    """
    run = run or RunDescription()
    if isinstance(input, VideoSource):
        given: VideoSource | None = input
        input = input.path
    else:
        given = None
    instances = model.kind == "boxes_v8seg"
    if run.analytics.masks and model.task != "segment" and not instances:
        what = "a classifier" if model.task == "classify" else "a detector"
        raise SettingsError(
            f"--masks: model '{model.path.name}' is {what}: it makes no masks to write"
        )
    check_objects(run.analytics, model)
    zones = zones_for(run.analytics.zones)
    rules = rules_for(run.analytics.watch, model, [z.name for z in zones.zones] if zones else [])
    paths = plan_outputs(input, output, results, run, rules=bool(rules))
    if not events_file:
        paths = replace(paths, events_file=None)
    if model.task == "detect":
        paths = replace(paths, picture=None)  # the summary picture plots fractions, not counts
    if rules and paths.events_file is None and emit is None:
        raise SettingsError(
            "--watch: its events would go nowhere (no results file to put them beside); "
            "give --events FILE, --webhook URL or a --results file"
        )
    source = given or open_source(input, run, max_frames)
    opened: list[Any] = []
    try:
        try:
            video_file = AtomicFile(output, "output", into=opened) if output is not None else None
            results_file = AtomicFile(results, "results", into=opened)
            maps = MaskMaps(model)
            lines = lines_for(run.analytics.lines)
            recorder = Recorder(model, zones, maps, run.analytics, lines)
            with held():  # its files and it, recorded whole (see AtomicFile's ``into``)
                sidecars = Sidecars(
                    model,
                    maps,
                    paths,
                    input_name=input.name,
                    rules=rules,
                    emit=emit,
                    video=output,
                    recorder=recorder,
                )
                opened.append(sidecars)
            summary = _Run(source, model, run, recorder, sidecars, video_file, results_file)(
                progress=progress, on_frame=on_frame, cancel=cancel
            )
            if before_commit is not None:
                before_commit()
        except BaseException:
            for item in opened:
                item.discard()
            raise
        if video_file is not None:
            video_file.commit()
        results_file.commit()
        summary.files = sidecars.commit()
        return summary
    finally:
        if given is None:
            source.close()


class _NoBar:
    """A quiet run's progress bar: tqdm is not even imported (25 ms of start-up here)."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int | None, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, unit="frame", desc=name, file=sys.stderr, dynamic_ncols=True,
        mininterval=0.5, leave=False,
    )  # fmt: skip


class _Run:
    """One run's stages, wired: ``__call__`` runs them and returns the summary."""

    def __init__(
        self,
        source: VideoSource,
        model: Model,
        run: RunDescription,
        recorder: Recorder,
        sidecars: Sidecars,
        video_file: AtomicFile | None,
        results_file: AtomicFile,
    ) -> None:
        self.source, self.model, self.run = source, model, run
        self.recorder, self.sidecars = recorder, sidecars
        self.video_file, self.results_file = video_file, results_file
        self.batch = default_batch(model, run.speed.batch)
        self.infer = Inferencer(model, top_k=run.look.top_k, speed=run.speed, batch=self.batch)
        self.video = (
            VideoWriter(video_file, source.info, run.encode) if video_file is not None else None
        )
        self.results = ResultsWriter(results_file)
        outputs = [*sidecars.outputs, self.results, *([self.video] if self.video else [])]
        self.loop = FrameLoop(
            recorder, painters_for(model, run.look, recorder), outputs, sidecars.events
        )
        self.done = 0
        self.processed = 0
        self.last_time = 0.0  # of the last frame the model ran on: open events end there

    def __call__(
        self,
        *,
        progress: bool,
        on_frame: Callable[[int, int | None], None] | None,
        cancel: threading.Event | None,
    ) -> RunSummary:
        stop = cancel if cancel is not None else threading.Event()
        source, speed, analytics = self.source, self.run.speed, self.run.analytics
        sampler = Sampler(analytics.every, analytics.fps)
        # With frames skipped, a batch may span more frames than it runs: room for them.
        held = max(speed.queue_size, self.batch) * (1 if sampler.all else 4)
        frames_in = Lossless(held, stop)
        # A batch's answers all go at once: room for a whole batch, or inference waits for the
        # writer to draw most of it (batch 8 on a GPU) before it may run the next.
        answers = Lossless(max(speed.queue_size, self.batch), stop)
        total = source.info.frames
        if total is not None and source.max_frames is not None:
            total = min(total, source.max_frames)
        bar = _progress_bar(total, source.path.name) if progress else _NoBar()
        name = source.path.name

        def read() -> None:
            for frame in source.frames():
                frames_in.put(Item(name, frame, skip=not sampler.take(frame.time)))
            frames_in.put(END)

        def infer() -> None:
            run_inference(
                frames_in.get,
                self.infer,
                lambda item, answer: answers.put((item, answer)),
                batch=self.batch,
                wait_s=None,  # lossless: every batch is full but the last
                zones=lambda item: self.recorder.zones_to_classify(item.frame),
                limit=held,
            )
            answers.put(END)

        def write() -> None:
            ok = False
            try:
                while (got := answers.get()) is not END:
                    self._take(*got)
                    bar.update(1)
                    if on_frame is not None:
                        on_frame(self.done, total)
                self.sidecars.finish(self.last_time)
                ok = True
            finally:
                try:
                    if self.video is not None:
                        self.video.close(flush=ok)
                finally:
                    self.results.close()

        threads = Threads(stop)
        threads.add("source", read)
        threads.add("inference", infer)
        threads.add("writer", write)
        started = time.perf_counter()
        try:
            # Signals only set ``stop`` while the stages run: the stages then end their current
            # step, and this thread waits for them (see worker.signals for why it must).
            with stop_on_signals(stop) as caught:
                threads.start()
                threads.wait()
                stuck = threads.join(_JOIN_GRACE_S)
        finally:
            bar.close()
        seconds = time.perf_counter() - started

        if stuck:
            raise StageError(
                stuck[0], f"did not stop within {_JOIN_GRACE_S:.0f} s after the run was stopped"
            )
        if caught.signum is not None:
            raise Cancelled(
                f"{caught.name}: stopped after {self.done} frames; no output was written",
                caught.signum,
            )
        threads.raise_first()
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"stopped after {self.done} frames; no output was written")
        return self._summary(seconds)

    def _take(self, item: Item, answer: Answer | None) -> None:
        self.loop.take(item, answer)
        self.done += 1
        if answer is not None:
            self.processed += 1
            self.last_time = item.frame.time

    def _summary(self, seconds: float) -> RunSummary:
        source = self.source
        if self.done == 0:
            # Nothing to publish: an empty "video" would be a half-written output.
            raise InputError(
                f"input '{source.path}': no frame could be decoded "
                f"({plural(source.bad_packets, 'undecodable packet')})"
            )
        if source.bad_packets:
            log.warning(
                "input '%s': %s skipped",
                source.path,
                plural(source.bad_packets, "undecodable packet was", "undecodable packets were"),
            )
        return RunSummary(
            input=str(source.path),
            output=str(self.video_file.final) if self.video_file is not None else None,
            results=str(self.results_file.final),
            model=str(self.model.path),
            task=self.model.task,
            provider=self.model.engine.provider,
            batch=self.batch,
            frames=self.done,
            processed=self.processed,
            frames_expected=source.frames_expected,
            truncated=source.truncated,
            bad_packets=source.bad_packets,
            damaged_frames=source.damaged_frames,
            timestamps_fixed=source.timestamps_fixed,
            seconds=round(seconds, 3),
            fps=round(self.done / seconds, 2) if seconds > 0 else 0.0,
            totals=self.recorder.summary(),
            objects=self._objects(),
            events=self.sidecars.describe() if self.sidecars.events else {},
            pipeline={
                **self.infer.describe(),
                "decoder": source.decoder,
                "encoder": self.video.codec if self.video is not None else None,
            },
        )

    def _objects(self) -> dict[str, Any]:
        """The summary's objects: the most per frame, tracks given an id, line crossings."""
        r = self.recorder
        if not r.counts_objects:
            return {}
        out: dict[str, Any] = {"most_in_a_frame": dict(r.most_regions)}
        if r.tracker is not None:
            out["tracks"] = r.tracker.next_id - 1
        if r.line_specs:
            out["lines"] = r.line_totals()
        return out
