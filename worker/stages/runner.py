"""Wiring: source -> inference -> writer, one thread each, joined by bounded queues.

Rules every stage follows here:
- a stage waits on a queue only in short slices, checking the shared stop flag between them,
  so a failure anywhere (or Ctrl-C, or a cancel request) stops every stage promptly;
- the first exception is kept and re-raised in the caller's thread, naming its stage;
- outputs are committed (renamed into place) only when every stage finished cleanly.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from worker.errors import Cancelled, InputError, OutputError, StageError, WorkerError
from worker.messages import plural
from worker.models import Model
from worker.ops.rules import Rule
from worker.ops.sampling import Sampler
from worker.ops.zones import ZoneSet
from worker.signals import stop_on_signals
from worker.stages.atomic import AtomicFile
from worker.stages.batching import collect
from worker.stages.frames import Answer
from worker.stages.infer import Inferencer, infer_frames
from worker.stages.sidecars import Sidecars
from worker.stages.source import VideoSource
from worker.stages.speed import Speed
from worker.stages.writer import Annotator, ResultsWriter, VideoWriter

__all__ = ["Extras", "RunSummary", "default_batch", "run_file"]

log = logging.getLogger(__name__)

_END = object()  # end of stream marker, passed down the queues
_POLL_S = 0.1
_JOIN_GRACE_S = 10.0


class _Stopped(Exception):
    """Raised inside a stage when another stage asked everyone to stop."""


class _Channel:
    """A bounded queue whose waits give up as soon as the run is stopping."""

    def __init__(self, maxsize: int, stop: threading.Event) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize)
        self._stop = stop

    def put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self, timeout: float | None = None) -> Any:
        """The next item; ``queue.Empty`` if ``timeout`` seconds pass first (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if wait <= 0:
                raise queue.Empty
            try:
                return self._q.get(timeout=wait)
            except queue.Empty:
                continue
        raise _Stopped


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
    events: dict[str, Any] = field(default_factory=dict)  # started, ended, dropped, snapshots
    files: dict[str, str | None] = field(default_factory=dict)  # masks, events, picture, ...
    pipeline: dict[str, Any] = field(default_factory=dict)  # fused?, decoder, encoder, bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Extras:
    """What a run does beyond the video and the JSON lines (all off by default)."""

    zones: ZoneSet | None = None
    rules: Sequence[Rule] = ()
    draw_zones: bool = True
    every: int = 1  # process every Nth frame
    fps: float | None = None  # process at most this many frames per second of video
    masks: Path | str | None = None  # a folder for PNGs, or "rle"
    events_file: Path | None = None  # events as JSON lines, published with the outputs
    emit: Callable[[dict[str, Any]], None] | None = None  # events also go here as they happen
    snapshots: Path | None = None  # a folder for the events' JPEGs
    picture: Path | None = None  # the summary picture


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


def run_file(
    input: Path,
    model: Model,
    *,
    output: Path | None,
    results: Path,
    batch: int = 0,
    alpha: float = 0.5,
    top_k: int = 5,
    max_frames: int | None = None,
    queue_size: int = 4,
    preset: str = "ultrafast",
    crf: int = 23,
    progress: bool = False,
    on_frame: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    before_commit: Callable[[], None] | None = None,
    speed: Speed | None = None,
    extras: Extras | None = None,
) -> RunSummary:
    """Process one video file end to end; returns the summary or raises a ``WorkerError``.

    ``output=None`` encodes no video (results, events and the other extras only).
    ``before_commit`` runs after the last frame, before the outputs are renamed into place; if
    it raises, nothing is published (the job queue checks there that it still holds the job).
    """
    if output is not None and str(output) == "-":
        raise OutputError(
            "output '-': the video cannot go to stdout (use --results - for the JSON lines); "
            "give a file, a FIFO or /dev/null"
        )
    for path, what in ((output, "output"), (results, "results")):
        if path is not None and str(path) != "-" and path.resolve() == input.resolve():
            raise OutputError(f"{what} '{path}': would overwrite the input")
    if output is not None and output.resolve() == results.resolve() and not _is_device(output):
        raise OutputError(f"results '{results}': same path as the output video")
    speed = speed or Speed()
    extras = extras or Extras()
    source = VideoSource(
        input, max_frames=max_frames, threads=speed.decode_threads, hw_decode=speed.hw_decode
    )
    opened: list[Any] = []
    try:
        try:
            video_file = AtomicFile(output, "output") if output is not None else None
            if video_file is not None:
                opened.append(video_file)
            results_file = AtomicFile(results, "results")
            opened.append(results_file)
            annotate = Annotator(model, alpha, extras.zones, draw_zones=extras.draw_zones)
            sidecars = Sidecars(
                model,
                annotate,
                input_name=input.name,
                masks=extras.masks,
                rules=extras.rules,
                emit=extras.emit,
                events_file=extras.events_file,
                snapshots=extras.snapshots,
                picture=extras.picture,
                video=output,
            )
            opened.append(sidecars)
            summary = _run(
                source,
                model,
                video_file,
                results_file,
                annotate,
                sidecars,
                batch=batch,
                top_k=top_k,
                queue_size=queue_size,
                preset=preset,
                crf=crf,
                progress=progress,
                on_frame=on_frame,
                cancel=cancel,
                speed=speed,
                extras=extras,
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
        source.close()


def _run(
    source: VideoSource,
    model: Model,
    video_file: AtomicFile | None,
    results_file: AtomicFile,
    annotate: Annotator,
    sidecars: Sidecars,
    *,
    batch: int,
    top_k: int,
    queue_size: int,
    preset: str,
    crf: int,
    progress: bool,
    on_frame: Callable[[int, int | None], None] | None,
    cancel: threading.Event | None,
    speed: Speed,
    extras: Extras,
) -> RunSummary:
    stop = cancel if cancel is not None else threading.Event()
    failures: list[tuple[str, BaseException]] = []
    lock = threading.Lock()
    batch = default_batch(model, batch)
    sampler = Sampler(extras.every, extras.fps)
    # With frames skipped, a batch may span more frames than it runs: room for them.
    held = max(queue_size, batch) * (1 if sampler.all else 4)
    frames_in = _Channel(held, stop)
    answers = _Channel(queue_size, stop)
    infer = Inferencer(model, top_k=top_k, speed=speed, batch=batch)
    video = (
        VideoWriter(video_file, source.info, preset=preset, crf=crf, encoder=speed.encoder)
        if video_file is not None
        else None
    )
    # Files are lossless: a batch waits until full. A live source waits at most this long.
    batch_wait = speed.batch_wait_s if source.live else None
    results = ResultsWriter(results_file)
    total = source.info.frames
    if total is not None and source.max_frames is not None:
        total = min(total, source.max_frames)
    bar = tqdm(
        total=total,
        unit="frame",
        desc=source.path.name,
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
        leave=False,
    )
    done = 0
    processed = 0

    def read() -> None:
        for frame in source.frames():
            frames_in.put((frame, sampler.take(frame.time)))
        frames_in.put(_END)

    def run_model() -> None:
        ended = False
        while not ended:
            pending, ended = collect(
                frames_in.get, batch, batch_wait, end=_END, weigh=_chosen, limit=held
            )
            if not pending:
                break
            chosen = [f for f, take in pending if take]
            zones = (
                [annotate.frame_zones(f.image.shape[:2]) for f in chosen]
                if extras.zones and model.task == "classify"
                else None
            )
            outs = iter(infer_frames(infer, [f.image for f in chosen], zones) if chosen else [])
            for frame, take in pending:
                answers.put((frame, next(outs) if take else None))
        answers.put(_END)

    def write() -> None:
        nonlocal done, processed
        ok = False
        last: Answer | None = None  # what frames the model skipped are drawn with
        try:
            while (item := answers.get()) is not _END:
                frame, answer = item
                if answer is not None:
                    last = answer
                    record = annotate.record(frame, answer)
                    drawn: list[Any] = []

                    def picture(f: Any = frame, a: Answer = answer, d: list[Any] = drawn) -> Any:
                        if not d:
                            d.append(annotate.draw(f, a))
                        return d[0]

                    sidecars.frame(frame, answer, record, picture)
                    results.write(record)
                    processed += 1
                    if video is not None:
                        video.write(frame, picture())
                elif video is not None:
                    video.write(frame, annotate.draw(frame, last) if last else frame.image)
                done += 1
                bar.update(1)
                if on_frame is not None:
                    on_frame(done, total)
            sidecars.finish()
            ok = True
        finally:
            try:
                if video is not None:
                    video.close(flush=ok)
            finally:
                results.close()

    def guarded(name: str, body: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                body()
            except _Stopped:
                pass
            except BaseException as e:
                with lock:
                    failures.append((name, e))
                stop.set()

        return target

    threads = [
        threading.Thread(target=guarded(name, body), name=f"worker-{name}", daemon=True)
        for name, body in (("source", read), ("inference", run_model), ("writer", write))
    ]
    started = time.perf_counter()
    try:
        # Signals only set ``stop`` while the stages run: the stages then end their current
        # step, and this thread waits for them (see worker.signals for why it must).
        with stop_on_signals(stop) as caught:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(_POLL_S)
                if stop.is_set():
                    break
            deadline = time.monotonic() + _JOIN_GRACE_S
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            stuck = [t.name for t in threads if t.is_alive()]
    finally:
        bar.close()
    seconds = time.perf_counter() - started

    if stuck:
        raise StageError(
            stuck[0], f"did not stop within {_JOIN_GRACE_S:.0f} s after the run was stopped"
        )
    if caught.signum is not None:
        raise Cancelled(
            f"{caught.name}: stopped after {done} frames; no output was written", caught.signum
        )
    if failures:
        name, err = failures[0]
        if isinstance(err, WorkerError):
            raise err
        raise StageError(name, f"{type(err).__name__}: {err}") from err
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"stopped after {done} frames; no output was written")
    if done == 0:
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
    n = max(processed, 1)
    if model.task == "segment":
        totals = {k: round(v / n, 6) for k, v in annotate.totals.items()}
    else:
        totals = dict(annotate.totals)
    return RunSummary(
        input=str(source.path),
        output=str(video_file.final) if video_file is not None else None,
        results=str(results_file.final),
        model=str(model.path),
        task=model.task,
        provider=model.engine.provider,
        batch=batch,
        frames=done,
        processed=processed,
        frames_expected=source.frames_expected,
        truncated=source.truncated,
        bad_packets=source.bad_packets,
        damaged_frames=source.damaged_frames,
        timestamps_fixed=source.timestamps_fixed,
        seconds=round(seconds, 3),
        fps=round(done / seconds, 2) if seconds > 0 else 0.0,
        totals=totals,
        events=sidecars.describe() if extras.rules else {},
        pipeline={
            **infer.describe(),
            "decoder": source.decoder,
            "encoder": video.codec if video is not None else None,
        },
    )


def _chosen(item: Any) -> int:
    """How much a queued (frame, chosen) counts toward a batch: only frames the model runs."""
    return 1 if item[1] else 0
