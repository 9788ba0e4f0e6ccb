"""The worker's side of the queue: take a job, hold its lease, finish it.

A job is held through its stream entry in the consumer group's pending list: the entry's idle
time is the lease clock. The holder renews it every heartbeat (``beat``); any worker takes over
an entry idle for a whole lease (``XAUTOCLAIM``). Each start writes a fresh random token into
the job hash, and every later write by a holder (renewal, progress, completion) is a script
that first checks that token: a worker whose job was taken over is fenced off, whatever it
still believes.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis.exceptions

from worker.constants import GROUP, HANDBACK_CONSUMER, HANDBACK_IDLE_MS, PRIORITIES
from worker.errors import JobError
from worker.queue.client import Queue
from worker.queue.connection import printable, utf8_problem
from worker.queue.jobs import JobSpec, parse_spec

__all__ = ["Beat", "Consumer", "Delivery", "Lease", "Outcome", "consumer_name"]

Beat = Literal["ok", "lost", "cancel", "deadline"]
Outcome = Literal["done", "failed", "cancelled", "retry", "dead", "handback"]
#: How much of a malformed payload the dead-letter record keeps.
_RAW_KEEP = 4096
#: Takeover scans stop after this many pending-list pages (COUNT 1 each) per stream and tick.
_SCAN_PAGES = 100


def consumer_name() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Delivery:
    """A stream entry this consumer now has pending: not yet a started job."""

    priority: str
    entry: str
    fields: dict[str, str]
    claimed: bool  # taken over from another consumer, not read new


@dataclass
class Lease:
    """A started job held by this worker, with the token that proves it."""

    consumer: Consumer
    spec: JobSpec
    entry: str
    token: str
    attempts: int

    @property
    def job_id(self) -> str:
        return self.spec.id

    def _keys(self) -> list[str]:
        return self.consumer.queue.keys.for_job(self.spec.id, self.spec.priority)

    def beat(self, progress: dict[str, Any] | None = None) -> Beat:
        """Renew the lease (and store progress); says whether to go on, and if not, why."""
        out = self.consumer.queue.scripts.beat(
            keys=self._keys(),
            args=[
                self.token,
                self.entry,
                GROUP,
                self.consumer.name,
                json.dumps(progress) if progress is not None else "",
            ],
        )
        return str(out)  # type: ignore[return-value]

    def finish(self, outcome: Outcome, text: str = "", *, retry_in: float = 0.0) -> str:
        """Record the outcome; returns the job's new state, or 'lost' if another worker holds
        it now (then nothing was recorded)."""
        s = self.consumer.queue.settings
        out = self.consumer.queue.scripts.finish(
            keys=self._keys(),
            args=[
                self.token,
                self.entry,
                GROUP,
                self.consumer.name,
                outcome,
                text,
                repr(float(retry_in)),
                s.max_attempts,
                HANDBACK_IDLE_MS,
                HANDBACK_CONSUMER,
            ],
        )
        return str(out)


class Consumer:
    """One worker process in the consumer group."""

    def __init__(self, queue: Queue, name: str | None = None) -> None:
        self.queue = queue
        self.name = name or consumer_name()

    # ------------------------------------------------------------------------------ take

    def take(self, *, claim_stale: bool = True) -> Delivery | None:
        """The next entry: per priority, highest first, a stale one (its holder is gone) before
        a new one, so a dead worker's job is not overtaken by the queue behind it.
        ``claim_stale=False``: new entries only (the caller cannot yet tell a dead holder from
        one that has not renewed since Redis came back)."""
        for p in PRIORITIES:
            d = self._claim_stale(p) if claim_stale else self._claim_handed_back(p)
            d = d or self._read_new(p)
            if d is not None:
                return d
        return None

    def _claim_stale(self, priority: str) -> Delivery | None:
        stream = self.queue.keys.stream(priority)
        min_idle = int(self.queue.settings.lease_s * 1000)
        cursor = "0-0"
        for _ in range(_SCAN_PAGES):
            try:
                reply = self.queue.client.xautoclaim(
                    stream, GROUP, self.name, min_idle, start_id=cursor, count=1
                )
            except redis.exceptions.ResponseError as e:
                if "NOGROUP" in str(e):
                    self.queue.ensure_groups()
                    return None
                raise
            cursor, claimed = reply[0], reply[1]
            for entry, fields in claimed:
                if fields is not None:  # None: the entry was deleted under its pending id
                    return Delivery(priority, entry, fields, claimed=True)
            if cursor == "0-0":
                return None
        return None

    def _claim_handed_back(self, priority: str) -> Delivery | None:
        """An entry a stopping worker handed back: released on purpose, so safe to take at any
        time (``_claim_stale`` finds these too, among entries whose holder may be gone)."""
        stream = self.queue.keys.stream(priority)
        try:
            pending = self.queue.client.xpending_range(
                stream, GROUP, min="-", max="+", count=1, consumername=HANDBACK_CONSUMER
            )
        except redis.exceptions.ResponseError as e:
            if "NOGROUP" in str(e):
                self.queue.ensure_groups()
                return None
            raise
        for p in pending:
            # Its idle time is a year; once one worker claims it, it is fresh, so a second
            # worker claiming at the same moment gets nothing.
            claimed = cast(
                list[tuple[str, dict[str, str] | None]],
                self.queue.client.xclaim(
                    stream, GROUP, self.name, HANDBACK_IDLE_MS // 2, [p["message_id"]]
                ),
            )
            for entry, fields in claimed:
                if fields is not None:
                    return Delivery(priority, entry, fields, claimed=True)
        return None

    def _read_new(self, priority: str) -> Delivery | None:
        stream = self.queue.keys.stream(priority)
        try:
            reply = cast(
                list[tuple[str, list[tuple[str, dict[str, str]]]]],
                self.queue.client.xreadgroup(GROUP, self.name, {stream: ">"}, count=1),
            )
        except redis.exceptions.ResponseError as e:
            if "NOGROUP" in str(e):
                self.queue.ensure_groups()
                return None
            raise
        for _, entries in reply or []:
            for entry, fields in entries:
                return Delivery(priority, entry, fields, claimed=False)
        return None

    def wait_for_new(self, timeout_s: float) -> None:
        """Block until an entry is added to any work stream, or ``timeout_s`` passes. Reads
        nothing on the group's behalf: the caller then takes entries in priority order."""
        streams: dict[Any, Any] = {self.queue.keys.stream(p): "$" for p in PRIORITIES}
        self.queue.client.xread(streams, count=1, block=max(1, int(timeout_s * 1000)))

    # ------------------------------------------------------------------------------ start

    def start(self, d: Delivery) -> Lease | str:
        """Turn a delivery into a held job, or say why not ('dead-letter', 'lost', 'stale',
        'cancelled', 'failed', 'dead'). A payload that is not a valid job is dead-lettered
        here, without running anything."""
        raw = d.fields.get("job")
        try:
            for name, value in d.fields.items():
                problem = utf8_problem(name) or utf8_problem(value)
                if problem is not None:
                    raise JobError(f"job payload: field '{printable(name)}': {problem}")
            if raw is None:
                fields = [printable(f) for f in sorted(d.fields)[:8]]
                raise JobError(f"job payload: no 'job' field (fields: {fields})")
            spec = parse_spec(raw)
        except JobError as e:
            self.bury(d, str(e))
            return "dead-letter"
        q = self.queue
        token = uuid.uuid4().hex
        reply = q.scripts.start(
            keys=q.keys.for_job(spec.id, d.priority),
            args=[
                spec.id,
                d.entry,
                GROUP,
                self.name,
                token,
                q.settings.max_attempts,
                raw,
                d.priority,
            ],
        )
        if reply[0] != "ok":
            return str(reply[0])
        if spec.priority != d.priority:  # a hand-written entry put in another stream
            spec = spec.model_copy(update={"priority": d.priority})
        return Lease(self, spec, d.entry, token, int(reply[1]))

    def bury(self, d: Delivery, error: str) -> None:
        """Dead-letter an entry whose payload is not a job we can run."""
        fields = {printable(k): printable(v) for k, v in d.fields.items()}
        raw = json.dumps(fields)[:_RAW_KEEP]
        job_id = ""
        try:
            maybe = json.loads(fields.get("job", ""))
            # Only a well-formed id names a job hash; anything else is a letter without a job.
            if isinstance(maybe, dict) and re.fullmatch(r"[0-9a-f]{32}", str(maybe.get("id"))):
                job_id = maybe["id"]
        except (json.JSONDecodeError, TypeError):
            pass
        q = self.queue
        q.scripts.bury(
            keys=q.keys.for_job(job_id or "-", d.priority),
            args=[d.entry, GROUP, raw, printable(error), job_id],
        )

    # ------------------------------------------------------------------------------ retries

    def promote_due(self, limit: int = 50) -> int:
        """Put jobs whose retry backoff has passed back on their streams."""
        q = self.queue
        secs, micros = q.client.time()
        due = cast(
            list[str],
            q.client.zrangebyscore(q.keys.delayed, "-inf", secs + micros / 1e6, start=0, num=limit),
        )
        moved = 0
        for job_id in due:
            priority = str(q.client.hget(q.keys.job(job_id), "priority") or "normal")
            moved += int(
                q.scripts.requeue(keys=q.keys.for_job(job_id, priority), args=[job_id, GROUP])
            )
        return moved

    def idle(self) -> bool:
        """Nothing queued, running anywhere or waiting for a retry: a burst worker may leave.
        Entries are deleted when a job ends, so a non-empty stream still has work in it."""
        q = self.queue
        pipe = q.client.pipeline(transaction=False)
        for p in PRIORITIES:
            pipe.xlen(q.keys.stream(p))
        pipe.zcard(q.keys.delayed)
        return not any(int(n) for n in pipe.execute())
