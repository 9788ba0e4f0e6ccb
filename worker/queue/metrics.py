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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from worker.errors import StaleHeartbeat
from worker.httpd import Health

__all__ = [
    "HEARTBEAT_GLOB",
    "Heartbeat",
    "Metrics",
    "heartbeat_health",
    "heartbeat_path",
    "read_heartbeat",
    "read_heartbeats",
]

log = logging.getLogger(__name__)


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


HEARTBEAT_GLOB = "video-worker-*.heartbeat"


def heartbeat_path(fixed: Path | None, folder: Path, pid: int | None = None) -> Path:
    """Where this process's heartbeat goes: the fixed file if set, else one per process
    (several workers on a host each prove their own loop alive)."""
    return fixed if fixed is not None else folder / f"video-worker-{pid or os.getpid()}.heartbeat"


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


def read_heartbeats(fixed: Path | None, folder: Path, max_age_s: float) -> list[dict[str, Any]]:
    """Every live worker's heartbeat on this host; ``StaleHeartbeat`` if there is none, or if
    one whose process is alive is too old (that loop is stuck). Files of processes that are
    gone are skipped (and removed when they are ours to remove)."""
    if fixed is not None:
        return [read_heartbeat(fixed, max_age_s)]
    paths = sorted(folder.glob(HEARTBEAT_GLOB))
    live: list[dict[str, Any]] = []
    for path in paths:
        try:
            live.append(read_heartbeat(path, max_age_s))
        except StaleHeartbeat as e:
            if "is gone" in str(e):
                with contextlib.suppress(OSError):
                    path.unlink()  # left by a killed worker
                continue
            raise
    if not live:
        raise StaleHeartbeat(f"no worker heartbeat in '{folder}' (is 'worker serve' running here?)")
    return live


def heartbeat_health(heartbeat: Heartbeat) -> Health:
    """``/healthz`` of ``worker serve``: healthy while the loop's heartbeat is fresh."""

    def health() -> tuple[bool, dict[str, Any]]:
        ok = heartbeat.fresh()
        return ok, {"ok": ok, **(heartbeat.state or {})}

    return health
