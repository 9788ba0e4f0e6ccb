"""What a running worker tells the outside: Prometheus metrics, a health endpoint, and the
heartbeat file that ``worker check`` (the liveness probe) reads.

The heartbeat lives in a local file, not in Redis: a liveness probe must say whether this
process's loop is alive, and it is while Redis is away (it is retrying). A probe that
depended on Redis would have every worker restarted during a Redis restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from worker.errors import WorkerError

__all__ = [
    "Health",
    "Heartbeat",
    "Metrics",
    "StaleHeartbeat",
    "heartbeat_health",
    "read_heartbeat",
    "serve_http",
]

log = logging.getLogger(__name__)


class StaleHeartbeat(WorkerError):
    """``worker check``: no live worker here. Exit 1, as liveness probes expect."""

    exit_code = 1


class Metrics:
    """The worker's metrics, in a registry of its own (no global state between instances)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ns = "video_worker"
        self.jobs_finished = Counter(
            "jobs_finished", "Jobs this worker finished, by outcome", ["outcome"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self.job_seconds = Histogram(
            "job_seconds", "Wall time of the jobs this worker finished", ["outcome"],
            namespace=ns, registry=r,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400),
        )  # fmt: skip
        self.frames = Counter("frames", "Frames processed by this worker", namespace=ns, registry=r)
        self.fps = Gauge(
            "frames_per_second", "Frames/s of the jobs running now", namespace=ns, registry=r
        )
        self.running = Gauge("running_jobs", "Jobs running here", namespace=ns, registry=r)
        self.lease_renewals = Counter(
            "lease_renewals", "Lease renewals (heartbeats) sent", namespace=ns, registry=r
        )
        self.leases_lost = Counter(
            "leases_lost", "Jobs taken over from this worker while it ran them",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.jobs = Gauge(
            "jobs", "Jobs in the queue by state (all workers)", ["state"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "queue_depth", "Jobs waiting for a worker, by priority", ["priority"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self.redis_up = Gauge(
            "redis_up", "1 while Redis answers this worker", namespace=ns, registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class Heartbeat:
    """The loop's proof of life: written each tick to ``path`` (atomically), kept in memory
    for ``/healthz``."""

    path: Path
    max_age_s: float
    worker: str
    state: dict[str, Any] | None = None

    def beat(self, **state: Any) -> None:
        self.state = {"worker": self.worker, "pid": os.getpid(), "time": time.time(), **state}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.state))
            os.replace(tmp, self.path)
        except OSError as e:  # a full /tmp must not stop the jobs; the probe will say so
            log.debug("heartbeat file %s: %s", self.path, e)

    def fresh(self) -> bool:
        return self.state is not None and time.time() - self.state["time"] <= self.max_age_s

    def remove(self) -> None:
        """On exit; left alone if another worker on this host wrote it last (it is alive)."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if json.loads(self.path.read_text())["pid"] == os.getpid():
                self.path.unlink()


def read_heartbeat(path: Path, max_age_s: float) -> dict[str, Any]:
    """The heartbeat a local ``worker serve`` wrote, if fresh; else ``WorkerError`` saying why."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        age = time.time() - float(state["time"])
        pid = int(state["pid"])
    except FileNotFoundError:
        raise StaleHeartbeat(
            f"no worker heartbeat at '{path}' (is 'worker serve' running here?)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StaleHeartbeat(f"heartbeat '{path}': unreadable ({e})") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise StaleHeartbeat(f"heartbeat '{path}': worker process {pid} is gone") from None
    except PermissionError:
        pass  # it exists, as another user
    if age > max_age_s:
        raise StaleHeartbeat(
            f"heartbeat '{path}': {age:.1f} s old, expected under {max_age_s:.0f} s "
            "(the worker loop is stuck)"
        )
    state["age_s"] = round(age, 3)
    return state


#: What ``/healthz`` reports: (healthy?, JSON body).
Health = Callable[[], tuple[bool, dict[str, Any]]]


def heartbeat_health(heartbeat: Heartbeat) -> Health:
    """``/healthz`` of ``worker serve``: healthy while the loop's heartbeat is fresh."""

    def health() -> tuple[bool, dict[str, Any]]:
        ok = heartbeat.fresh()
        return ok, {"ok": ok, **(heartbeat.state or {})}

    return health


def serve_http(port: int, exposition: Callable[[], bytes], health: Health) -> ThreadingHTTPServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 when ``health`` says ok,
    else 503) on ``port``, all interfaces, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, exposition())
            elif path in ("/healthz", "/health"):
                ok, state = health()
                self._send(200 if ok else 503, "application/json", json.dumps(state).encode())
            else:
                self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news

    try:
        server = ThreadingHTTPServer(("", port), Handler)
    except OSError as e:
        raise WorkerError(
            f"setting WORKER_METRICS_PORT: cannot listen on port {port} ({e.strerror or e})"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
