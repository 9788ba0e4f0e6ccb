"""``worker monitor``: live RTSP cameras through one model, until stopped.

Cameras come from ``--input`` (repeatable; ``NAME=URL`` names one, else ``cam1``, ``cam2``...)
or, when no ``--input`` is given, from the ``cameras`` setting (``WORKER_CAMERAS`` in the
environment or ``.env``), which keeps credentials off the command line. URLs are shown only
redacted, everywhere.

Runs until ``--duration`` passes, SIGTERM or SIGINT (both a normal stop: exit 0 after every
segment is finished), a stage fails (exit 1), or every camera gave up (exit 1; only with
``reconnect_attempts`` set).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.cli.flags import (
    add_analytics_flags,
    add_look_flags,
    add_model_flags,
    add_pipeline_flag,
    analytics_cli,
)
from worker.errors import OutputError, SettingsError, StageError, WorkerError
from worker.settings import CAMERA_NAME, Settings, load_settings

if TYPE_CHECKING:
    from worker.live import Camera, MonitorOptions

__all__ = ["add_monitor_parser", "cameras_from", "cmd_monitor", "monitor_options"]

log = logging.getLogger(__name__)

_SCHEMES = ("rtsp://", "rtsps://")
_STATS_EVERY_S = 60.0


def add_monitor_parser(sub: Any) -> None:
    m = sub.add_parser("monitor", help="watch live RTSP cameras: record, raise events, measure")
    add_pipeline_flag(m, "the cameras, model, recording, events and watch rules")
    m.add_argument(
        "--input", action="append", dest="inputs", metavar="[NAME=]URL",
        help="rtsp:// camera; repeat per camera (default: the WORKER_CAMERAS setting)",
    )  # fmt: skip
    add_model_flags(m, batch_help="frames per inference call, across cameras")
    m.add_argument("--record", type=Path, help="folder for annotated recordings")
    m.add_argument(
        "--segment-seconds", type=float, dest="segment_seconds", help="recording length (60)"
    )
    add_analytics_flags(m)
    m.add_argument(
        "--max-latency-ms", type=float, dest="max_latency_ms",
        help="frames older than this when inference is free are dropped (500)",
    )  # fmt: skip
    m.add_argument("--duration", type=float, help="stop after this many seconds")
    m.add_argument("--live-queue", type=int, dest="live_queue", help="frames held per camera")
    m.add_argument(
        "--reconnect-attempts", type=int, dest="reconnect_attempts",
        help="give a camera up after N failed connects in a row (0: never)",
    )  # fmt: skip
    m.add_argument("--metrics-port", type=int, dest="metrics_port", help="0: off")
    add_look_flags(m)
    m.add_argument("--quiet", action="store_true", default=None, help="warnings only")
    m.add_argument("--debug", action="store_true", default=None, help="tracebacks on errors")


def cameras_from(inputs: list[str] | None, settings: Settings) -> list[Camera]:
    """The cameras to watch: ``--input`` values if any, else the ``cameras`` setting."""
    from worker.live.camera import Camera, redact

    if inputs:
        named: list[tuple[str, str]] = []
        for i, text in enumerate(inputs, 1):
            name, sep, rest = text.partition("=")
            if sep and "://" not in name and CAMERA_NAME.match(name):
                named.append((name, rest))
            else:
                named.append((f"cam{i}", text))
        source = "--input"
    else:
        named = [(k, v.get_secret_value()) for k, v in settings.cameras.items()]
        source = "setting WORKER_CAMERAS"
    if not named:
        raise SettingsError("no camera: give --input rtsp://... or set WORKER_CAMERAS")
    seen: set[str] = set()
    cameras = []
    for name, url in named:
        if not url.lower().startswith(_SCHEMES):
            raise SettingsError(
                f"{source} '{redact(url)}' (camera {name}): expected an rtsp:// or rtsps:// "
                "URL (for video files use 'worker run')"
            )
        if name in seen:
            raise SettingsError(f"{source}: camera name '{name}' is used twice")
        seen.add(name)
        cameras.append(Camera(name, url))
    return cameras


def monitor_options(s: Settings) -> MonitorOptions:
    from worker.live.camera import Backoff, ConnectOptions
    from worker.live.monitor import MonitorOptions
    from worker.stages.speed import Speed

    return MonitorOptions(
        batch=s.batch,
        batch_wait_s=s.batch_wait_ms / 1000,
        max_latency_s=s.max_latency_ms / 1000,
        live_queue=s.live_queue,
        alpha=s.alpha,
        top_k=s.top_k,
        preset=s.preset,
        crf=s.crf,
        record=s.record,
        segment_s=s.segment_seconds,
        every=s.every,
        fps=s.fps,
        draw_zones=s.draw_zones,
        snapshots=s.snapshots,
        ui_fps=s.ui_fps,
        jpeg_quality=s.jpeg_quality,
        connect=ConnectOptions(
            open_timeout_s=s.open_timeout_s,
            read_timeout_s=s.read_timeout_s,
            backoff=Backoff(base_s=s.reconnect_base_s, cap_s=s.reconnect_max_s),
            max_attempts=s.reconnect_attempts,
        ),
        speed=Speed.from_settings(s),
    )


def _log_stats(stats: dict[str, dict[str, Any]]) -> None:
    for name, s in stats.items():
        lat = s["latency_ms"]
        log.info(
            "camera %s: %s; received %d, processed %d, dropped %d %s; latency p50 %s ms p99 %s ms",
            name, s["state"], s["received"], s["processed"], s["dropped"],
            s["dropped_by_reason"] or "", lat.get("p50", "-"), lat.get("p99", "-"),
        )  # fmt: skip


def cmd_monitor(args: argparse.Namespace) -> int:
    from worker.httpd import serve_http
    from worker.live.metrics import MonitorMetrics
    from worker.live.monitor import Monitor
    from worker.live.pages import monitor_routes
    from worker.sinks import open_sinks
    from worker.stages.options import configured_model, rules_for, zones_for

    cli = {k: v for k, v in analytics_cli(args).items() if k not in ("command", "inputs")}
    settings = load_settings(**cli)
    if not settings.quiet:
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", force=True
        )
        logging.getLogger("worker").setLevel(logging.INFO)
    cameras = cameras_from(args.inputs, settings)
    model = configured_model(settings)
    known = {c.name for c in cameras}
    for z in settings.zones:
        if z.camera is not None and z.camera not in known:
            raise SettingsError(
                f"zone '{z.name}': camera '{z.camera}' is not one of the cameras "
                f"({', '.join(sorted(known))})"
            )
    zones = {c.name: zones_for(settings.zones, c.name) for c in cameras}
    every_zone = zones_for([z.model_copy(update={"camera": None}) for z in settings.zones])
    rules = rules_for(settings.watch, model, every_zone)
    if settings.record is not None:
        try:
            settings.record.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"--record '{settings.record}': cannot write ({e.strerror})") from e
    webhook = settings.webhook.get_secret_value() if settings.webhook else None
    sink = open_sinks(
        settings.events, webhook, settings.redis_url.get_secret_value(), settings.queue
    )
    monitor = Monitor(
        cameras,
        model,
        monitor_options(settings),
        rules=rules,
        on_event=sink.write if sink is not None else None,
        zones=zones,
    )
    stop = threading.Event()
    why = "stopped"

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal why
        why = signal.Signals(signum).name
        stop.set()

    stops = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in stops}
    http = None
    summary: dict[str, Any] | None = None
    try:
        monitor.start()
        if settings.metrics_port:
            metrics = MonitorMetrics(monitor)
            pages = monitor_routes(monitor) if settings.ui else None
            http = serve_http(
                settings.metrics_port,
                metrics.exposition,
                metrics.health,
                settings.metrics_host,
                router=pages,
            )
            if pages is not None:
                host = settings.metrics_host or "localhost"
                log.info("monitor: cameras at http://%s:%d/", host, http.port)
        started = time.monotonic()
        next_stats = started + _STATS_EVERY_S
        while not stop.wait(0.2):
            now = time.monotonic()
            if monitor.failed.is_set():
                why = "a stage failed"
                break
            if monitor.all_gave_up():
                why = "every camera gave up"
                break
            if settings.duration is not None and now - started >= settings.duration:
                why = "duration reached"
                break
            if now >= next_stats:
                _log_stats(monitor.stats())
                next_stats = now + _STATS_EVERY_S
        log.info("monitor: stopping (%s); finishing recordings", why)
        summary = monitor.stop()
    finally:
        if summary is None and not monitor.stopping:
            # Leaving early (a port in use, a second Ctrl-C): still finish every segment.
            with contextlib.suppress(WorkerError):
                monitor.stop()
        if http is not None:
            http.close()
        if sink is not None:
            sink.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary["stopped_by"] = why
    if sink is not None:
        summary["events_sink"] = sink.describe()
    print(json.dumps(summary))
    if why == "every camera gave up":
        details = "; ".join(f"{n}: {s['detail']}" for n, s in summary["cameras"].items())
        raise StageError("cameras", f"every camera gave up ({details})")
    return 0
