"""``worker serve``: take jobs from the queue and run them, holding each job's lease.

One loop thread talks to Redis: it renews the lease of every running job each heartbeat
(carrying its progress, and bringing back cancel requests and deadlines), moves due retries
back to the queue, and takes new jobs while a slot is free. Each job runs in a thread of its
own through the handler the server was given (``worker.queue.video_job.VideoJobs`` for
``worker serve``): the loop knows leases, signals, presence and metrics, nothing of video.
Jobs never wait for the loop, and the loop never waits for a job: a Redis outage only pauses
the renewals (the jobs go on), and a stuck job cannot stop the heartbeat that ``worker check``
reads.

Outcomes: done; failed (bad input, deadline: never retried); retrying (anything else, with
exponential backoff and jitter) until ``max_attempts``, then dead (dead-letter list);
cancelled; handed back (SIGTERM after the grace period: another worker resumes it at once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time

import redis.exceptions

from worker.collector import release
from worker.errors import (
    Cancelled,
    JobError,
    LeaseLost,
    SettingsError,
)
from worker.httpd import serve_http
from worker.queue.client import Queue
from worker.queue.connection import TRANSIENT, describe_url
from worker.queue.handler import JobContext, JobHandler
from worker.queue.janitor import Janitor
from worker.queue.jobs import parse_spec
from worker.queue.leases import Consumer, Delivery, Outcome
from worker.queue.metrics import Heartbeat, Metrics, heartbeat_health, heartbeat_path
from worker.queue.presence import publish, withdraw
from worker.queue.running import Running, classify, one_line
from worker.retry import backoff
from worker.settings import Settings
from worker.signals import on_signals

__all__ = ["Server"]

log = logging.getLogger(__name__)

#: Longest pause between two tries while Redis is away.
_REDIS_BACKOFF_MAX_S = 10.0
#: Queue-wide gauges (jobs by state, queue depth) are refreshed this often.
_GAUGES_EVERY_S = 5.0
#: The longest an idle worker blocks in Redis waiting for new jobs.
_IDLE_BLOCK_S = 1.0
#: Progress is written at most this often, whatever the heartbeat.
_PROGRESS_EVERY_S = 1.0
#: After the grace period, how long a job thread may keep trying to record its hand-back while
#: Redis is away before it gives up (the lease then runs out and another worker takes over).
_ABANDON_AFTER_S = 10.0
#: The janitor's periodic sweep (expired ids, old letters and events, idle consumers,
#: abandoned temporaries) runs this often; cancels of dead holders are looked at every tick.
_SWEEP_EVERY_S = 600.0


class Server:
    """One ``worker serve`` process."""

    def __init__(
        self,
        settings: Settings,
        handler: JobHandler,
        *,
        name: str | None = None,
        install_signals: bool = True,
    ) -> None:
        if settings.lease_s < 2 * settings.heartbeat_s:
            raise SettingsError(
                f"setting WORKER_LEASE_S ({settings.lease_s:g}): must be at least twice "
                f"WORKER_HEARTBEAT_S ({settings.heartbeat_s:g}), or live jobs are taken over"
            )
        self.settings = settings
        self.queue = Queue(settings)
        self.consumer = Consumer(self.queue, name)
        self.metrics = Metrics()
        self.heartbeat = Heartbeat(
            heartbeat_path(settings.heartbeat_file, settings.heartbeat_dir),
            settings.lease_s,
            self.consumer.name,
        )
        self.handler = handler
        self._install_signals = install_signals
        self._where = describe_url(settings.redis_url.get_secret_value())
        self._free = list(range(settings.concurrency))
        self._running: dict[str, Running] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._hand_back_at = float("inf")
        self._abandon = threading.Event()
        self._redis_down = False
        self._ready = False
        self.janitor = Janitor(self.queue, self.consumer.name)
        # Since when Redis has answered without a break (None: it is away). Pending entries'
        # idle clocks ran while Redis was down, so holders that are alive look dead until they
        # renew: nothing is claimed until we have been connected for a whole lease.
        self._connected_since: float | None = None
        self._sweep_at = 0.0
        self._gauges_at = 0.0
        self._present_at = 0.0
        self._started_wall = time.time()

    # ------------------------------------------------------------------------------ control

    def stop(self, grace_s: float | None = None) -> None:
        """Take no new job; hand running ones back after ``grace_s`` (default: the setting).
        A second call hands them back at once."""
        now = time.monotonic()
        if self._stopping.is_set():
            self._hand_back_at = now
        else:
            self._stopping.set()
            self._hand_back_at = now + (self.settings.grace_s if grace_s is None else grace_s)
        self._wake.set()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            log.warning("%s again: handing running jobs back now", name)
        elif self._running:
            log.warning(
                "%s: taking no new jobs; %d running, handed back if not done in %.0f s",
                name,
                len(self._running),
                self.settings.grace_s,
            )
        self.stop()

    # ------------------------------------------------------------------------------ loop

    def serve(self) -> int:
        release()  # start-up is over: see worker.collector
        s = self.settings
        http = None
        if s.metrics_port:
            http = serve_http(
                s.metrics_port,
                self.metrics.exposition,
                heartbeat_health(self.heartbeat),
                s.metrics_host,
            )
        log.info(
            "worker %s: queue '%s' on %s, %d slot(s)%s",
            self.consumer.name,
            s.queue,
            self._where,
            s.concurrency,
            ", burst" if s.burst else "",
        )
        try:
            if self._install_signals:
                with on_signals(self._on_signal):
                    self._loop()
            else:
                self._loop()
        finally:
            if http is not None:
                http.close()
            self.heartbeat.remove()
            with contextlib.suppress(*TRANSIENT):
                withdraw(self.queue.client, self.queue.keys, self.consumer.name)
        log.info("worker %s: stopped", self.consumer.name)
        return 0

    def _loop(self) -> None:
        failures = 0
        while True:
            self._reap()
            self.heartbeat.beat(
                redis="down" if self._redis_down else "up",
                running=sorted(self._running),
                stopping=self._stopping.is_set(),
            )
            if self._stopping.is_set():
                if not self._running:
                    return
                self._hand_back_if_due()
            try:
                leave = self._tick()
            except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError):
                raise SettingsError(
                    f"setting WORKER_REDIS_URL: Redis at {self._where} refused the user/password"
                ) from None
            except TRANSIENT as e:
                self.metrics.redis_up.set(0)
                self._connected_since = None
                if not self._redis_down:
                    # Once per outage: the loop retries quietly until Redis answers again.
                    log.warning(
                        "Redis at %s unavailable (%s); retrying with backoff, running jobs go on",
                        self._where,
                        e,
                    )
                    self._redis_down = True
                failures += 1
                pause = backoff(failures + 1, 0.25, _REDIS_BACKOFF_MAX_S)
                if self._running:
                    # Renew within a quarter lease of Redis coming back: others wait a whole
                    # lease after reconnecting before they claim anything.
                    pause = min(pause, self.settings.lease_s / 4)
                self._wake.wait(pause)
                self._wake.clear()
                continue
            if self._redis_down:
                log.warning("Redis at %s is back", self._where)
                self._redis_down = False
            failures = 0
            self.metrics.redis_up.set(1)
            if leave:
                return

    def _tick(self) -> bool:
        """One round of Redis work; True when a burst worker has nothing left to do."""
        s = self.settings
        if not self._ready:
            self.queue.client.ping()
            self.queue.ensure_groups()
            self._ready = True
        now = time.monotonic()
        for r in list(self._running.values()):
            if now - r.last_beat >= s.heartbeat_s and not r.reporting:
                self._beat(r)
        if self._connected_since is None:
            self._connected_since = now
        settled = now - self._connected_since >= s.lease_s
        if settled:
            self.janitor.reap_cancels()
            if now >= self._sweep_at:
                self._sweep_at = now + _SWEEP_EVERY_S
                done = {k: v for k, v in self.janitor.sweep().items() if v}
                if done:
                    log.info("janitor: %s", ", ".join(f"{v} {k}" for k, v in done.items()))
        self.consumer.promote_due()
        if now - self._gauges_at >= _GAUGES_EVERY_S:
            self._refresh_gauges()
            self._gauges_at = now
        if now - self._present_at >= s.heartbeat_s:
            self._publish_presence()
            self._present_at = now
        took = False
        while self._free and not self._stopping.is_set():
            d = self.consumer.take(claim_stale=settled)
            if d is None:
                break
            took = self._start(d) or took
        if took:
            return False
        if self._free and not self._stopping.is_set():
            if s.burst and not self._running and self.consumer.idle():
                log.info("burst: queue drained")
                return True
            # Blocked in Redis, the loop cannot see a signal or a job that ended: at most a
            # second at a time, whatever the heartbeat.
            self.consumer.wait_for_new(min(s.heartbeat_s, _IDLE_BLOCK_S))
        else:
            self._wake.wait(s.heartbeat_s)
            self._wake.clear()
        return False

    def _beat(self, r: Running) -> None:
        now = time.monotonic()
        progress = None
        if now - r.last_progress >= _PROGRESS_EVERY_S:
            progress, r.last_progress = r.progress(), now
        answer = r.lease.beat(progress)
        r.last_beat = now
        self.metrics.lease_renewals.inc()
        if r.reporting:  # finished meanwhile: its token is spent, a "lost" means nothing
            return
        if answer == "lost":
            self.metrics.leases_lost.inc()
            log.warning("job %s: another worker took it over; stopping ours", r.lease.job_id)
            r.stop("lease")
        elif answer in ("cancel", "deadline"):
            if r.reason is None:
                log.info("job %s: %s; stopping", r.lease.job_id, answer)
            r.stop(answer)

    def _hand_back_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._hand_back_at:
            for r in self._running.values():
                if r.reason is None:
                    log.warning("job %s: grace period over; handing it back", r.lease.job_id)
                r.stop("shutdown")
        if now >= self._hand_back_at + _ABANDON_AFTER_S:
            self._abandon.set()

    def _publish_presence(self) -> None:
        """For ``worker dashboard``: alive, and what it runs."""
        running = {job_id: r.progress() for job_id, r in self._running.items()}
        publish(
            self.queue.client,
            self.queue.keys,
            self.consumer.name,
            self.settings.lease_s,
            slots=self.settings.concurrency,
            running=running,
            fps=round(sum(p["fps"] for p in running.values()), 2),
            stopping=self._stopping.is_set(),
            started=self._started_wall,
        )

    def _refresh_gauges(self) -> None:
        for state, n in self.queue.depth().items():
            self.metrics.jobs.labels(state).set(n)
        for priority, n in self.queue.waiting().items():
            self.metrics.queue_depth.labels(priority).set(n)

    def _reap(self) -> None:
        for job_id, r in list(self._running.items()):
            if r.finished.is_set():
                del self._running[job_id]
                self._free.append(r.slot)
        self.metrics.running.set(len(self._running))
        self.metrics.fps.set(sum(r.progress()["fps"] for r in self._running.values()))

    # ------------------------------------------------------------------------------ jobs

    def _start(self, d: Delivery) -> bool:
        held = self.consumer.start(d)
        if isinstance(held, str):
            if held == "dead-letter":
                self.metrics.jobs_finished.labels("dead").inc()
                log.warning("entry %s: not a valid job; moved to the dead-letter list", d.entry)
            elif held in ("dead", "failed", "cancelled"):
                self.metrics.jobs_finished.labels(held).inc()
                log.info("entry %s: %s without running", d.entry, held)
                # It will not run again: what a killed attempt left half-written goes.
                with contextlib.suppress(JobError):
                    self.janitor.clean_outputs(parse_spec(d.fields.get("job", "")))
            return False
        r = Running(held, self._free.pop())
        self._running[held.job_id] = r
        log.info(
            "job %s: started (attempt %d%s)",
            held.job_id,
            held.attempts,
            ", taken over" if d.claimed else "",
        )
        threading.Thread(
            target=self._run_job, args=(r,), name=f"job-{held.job_id[:8]}", daemon=True
        ).start()
        return True

    def _run_job(self, r: Running) -> None:
        job_id = r.lease.job_id
        try:
            outcome, text = self._execute(r)
            if outcome == "lost":
                log.warning("job %s: %s; nothing published", job_id, text)
                self.metrics.jobs_finished.labels("lost").inc()
                return
            state = self._report(r, outcome, text)
            seconds = time.monotonic() - r.started
            self.metrics.jobs_finished.labels(state).inc()
            self.metrics.job_seconds.labels(state).observe(seconds)
            self.metrics.frames.inc(r.done)
            detail = "" if state == "done" else f": {text}"
            log.info("job %s: %s after %.1f s (attempt %d)%s", job_id, state, seconds,
                     r.lease.attempts, detail)  # fmt: skip
        except BaseException as e:  # never leave a slot taken; the lease will expire
            log.error("job %s: worker error: %s", job_id, one_line(e))
        finally:
            r.finished.set()
            self._wake.set()

    def _execute(self, r: Running) -> tuple[Outcome | str, str]:
        ctx = JobContext(
            slot=r.slot, cancel=r.cancel, on_frame=r.on_frame, before_commit=lambda: self._fence(r)
        )
        try:
            result = self.handler(r.lease.spec, ctx)
        except BaseException as e:
            outcome, text = classify(r.reason, e)
            return outcome, self.handler.shown(text)
        return "done", json.dumps(result)

    def _fence(self, r: Running) -> None:
        """Right before the outputs are renamed into place: do we still hold the job?"""
        tries = 0
        while True:
            try:
                answer = r.lease.beat(r.progress())
                break
            except TRANSIENT:
                tries += 1
                if self._abandon.is_set():
                    raise LeaseLost("could not confirm the lease before shutting down") from None
                self._abandon.wait(backoff(tries + 1, 0.25, _REDIS_BACKOFF_MAX_S, jitter=False))
        if answer == "lost":
            r.stop("lease")
            raise LeaseLost("another worker holds the job now")
        if answer == "cancel":
            r.stop("cancel")
            raise Cancelled("cancelled by request")

    def _report(self, r: Running, outcome: Outcome | str, text: str) -> str:
        """Record the outcome, trying again while Redis is away (the result is not lost
        because of a blip); gives up only once the worker is leaving."""
        s = self.settings
        r.reporting = True
        delay = backoff(r.lease.attempts, s.retry_base_s, s.retry_max_s)
        tries = 0
        while True:
            try:
                return r.lease.finish(outcome, text, retry_in=delay)  # type: ignore[arg-type]
            except TRANSIENT:
                tries += 1
                if self._abandon.is_set():
                    log.warning(
                        "job %s: could not record '%s' (Redis unavailable); its lease will "
                        "run out and another worker will run it again",
                        r.lease.job_id,
                        outcome,
                    )
                    return "unrecorded"
                self._abandon.wait(backoff(tries + 1, 0.25, _REDIS_BACKOFF_MAX_S, jitter=False))
