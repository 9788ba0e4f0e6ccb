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
import threading
import time
from typing import TYPE_CHECKING, Any

from worker.cli.flags import (
    ANALYTICS,
    ENCODE,
    EVENTS,
    LOOK,
    MODEL,
    Flag,
    add_flags,
    add_pipeline_flag,
    settings_args,
)
from worker.description import CAMERA_NAME
from worker.errors import OutputError, SettingsError, StageError, WorkerError
from worker.settings import Settings, load_settings
from worker.signals import stop_on_signals

if TYPE_CHECKING:
    from worker.live import Camera, Monitor
    from worker.web import WebServer
    from worker.web.auth import Auth

__all__ = ["add_monitor_parser", "cameras_from", "cmd_monitor"]

log = logging.getLogger(__name__)

_SCHEMES = ("rtsp://", "rtsps://")
_STATS_EVERY_S = 60.0


#: How the cameras are recorded, how long the monitor runs, how it is watched.
LIVE = (
    Flag("record", help="folder for annotated recordings"),
    Flag("segment_seconds"),
    Flag("max_latency_ms"),
    Flag("duration"),
    Flag("live_queue"),
    Flag("reconnect_attempts", help="give a camera up after N failed connects in a row "
         "(0: never)"),
    Flag("metrics_port", help="/metrics, /healthz and the pages (0: off)"),
    Flag("quiet", kind="on", help="warnings only"),
    Flag("debug", kind="on", help="tracebacks on errors"),
)  # fmt: skip
_GROUPS = (MODEL, LOOK, ENCODE, ANALYTICS, EVENTS, LIVE)


def add_monitor_parser(sub: Any) -> None:
    m = sub.add_parser("monitor", help="watch live RTSP cameras: record, raise events, measure")
    add_pipeline_flag(m, "the cameras, model, recording, events and watch rules")
    m.add_argument(
        "--input", action="append", dest="inputs", metavar="[NAME=]URL",
        help="rtsp:// camera; repeat per camera (default: the WORKER_CAMERAS setting)",
    )  # fmt: skip
    add_flags(m, *_GROUPS)


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


def _log_stats(stats: dict[str, dict[str, Any]]) -> None:
    for name, s in stats.items():
        lat = s["latency_ms"]
        log.info(
            "camera %s: %s; received %d, processed %d, dropped %d %s; latency p50 %s ms p99 %s ms",
            name, s["state"], s["received"], s["processed"], s["dropped"],
            s["dropped_by_reason"] or "", lat.get("p50", "-"), lat.get("p99", "-"),
        )  # fmt: skip


def _pages(monitor: Monitor, settings: Settings, auth: Auth | None) -> WebServer | None:
    """``/metrics``, ``/healthz`` and (unless switched off) the pages, if they have a port."""
    from worker.httpd import serve_http
    from worker.live.metrics import MonitorMetrics
    from worker.live.pages import monitor_routes

    if not settings.metrics_port:
        return None
    metrics = MonitorMetrics(monitor)
    pages = monitor_routes(monitor) if settings.ui else None
    http = serve_http(
        settings.metrics_port,
        metrics.exposition,
        metrics.health,
        settings.metrics_host,
        router=pages,
        auth=auth,
    )
    if pages is not None:
        host = settings.metrics_host or "localhost"
        log.info("monitor: cameras at http://%s:%d/", host, http.port)
    return http


def _watch(monitor: Monitor, settings: Settings, stop: threading.Event) -> str:
    """Until a signal, a failure, every camera giving up or the duration; why it ended."""
    started = time.monotonic()
    next_stats = started + _STATS_EVERY_S
    while not stop.wait(0.2):
        now = time.monotonic()
        if monitor.failed.is_set():
            return "a stage failed"
        if monitor.all_gave_up():
            return "every camera gave up"
        if settings.duration is not None and now - started >= settings.duration:
            return "duration reached"
        if now >= next_stats:
            _log_stats(monitor.stats())
            next_stats = now + _STATS_EVERY_S
    return "stopped"


def cmd_monitor(args: argparse.Namespace) -> int:
    from worker.cli.common import configured_model, pages_auth
    from worker.cli.main import setup_logging
    from worker.live.monitor import Monitor
    from worker.sinks import open_sinks

    settings = load_settings(args.pipeline, **settings_args(args, *_GROUPS))
    if not settings.quiet:
        setup_logging("%(asctime)s %(levelname)s %(message)s", force=True)
        logging.getLogger("worker").setLevel(logging.INFO)
    cameras = cameras_from(args.inputs, settings)
    # Before anything starts: pages open to the network without a login are refused.
    auth = None
    if settings.metrics_port and settings.ui:
        auth = pages_auth(settings, settings.metrics_host, "WORKER_METRICS_HOST")
    model = configured_model(settings, live=True)
    run = settings.run
    per_camera = {name: run.overlay(opts) for name, opts in settings.camera_options.items()}
    if settings.record is not None:
        try:
            settings.record.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"--record '{settings.record}': cannot write ({e.strerror})") from e
    webhook = settings.webhook.get_secret_value() if settings.webhook else None
    sink = open_sinks(
        settings.events, webhook, settings.redis_url.get_secret_value(), settings.queue
    )
    try:
        monitor = Monitor(
            cameras,
            model,
            run,
            per_camera=per_camera,
            on_event=sink.write if sink is not None else None,
        )
    except BaseException:
        if sink is not None:
            sink.close()
        raise
    stop = threading.Event()
    http = None
    summary: dict[str, Any] | None = None
    try:
        with stop_on_signals(stop) as caught:
            monitor.start()
            http = _pages(monitor, settings, auth)
            why = _watch(monitor, settings, stop)
            log.info("monitor: stopping (%s); finishing recordings", caught.name or why)
            summary = monitor.stop()
    finally:
        if summary is None and not monitor.stopping:
            # Leaving early (a port in use): still finish every segment.
            with contextlib.suppress(WorkerError):
                monitor.stop()
        if http is not None:
            http.close()
        if sink is not None:
            sink.close()
    why = caught.name or why
    summary["stopped_by"] = why
    if sink is not None:
        summary["events_sink"] = sink.describe()
    print(json.dumps(summary))
    if why == "every camera gave up":
        details = "; ".join(f"{n}: {s['detail']}" for n, s in summary["cameras"].items())
        raise StageError("cameras", f"every camera gave up ({details})")
    return 0
