"""Every Redis key, stream and group name the job queue uses, in one place.

All keys of one queue share the prefix ``vw:<queue>:`` so several queues (or other programs)
can share a Redis without touching each other's data:

- ``stream:<priority>``  work streams, one per priority, read by the consumer group ``workers``;
  an entry carries the job's JSON (field ``job``). Never trimmed: an entry is deleted only
  after it was acknowledged (trimming could drop a pending job).
- ``job:<id>``           hash: the job's spec, state, attempts, lease token, progress, result.
  Expires ``result_ttl_s`` after the job finished (``dead_ttl_s`` if it died).
- ``jobs:<state>``       sorted sets of job ids by state, scored by the time they got there;
  ids of expired jobs are trimmed by the workers' janitor.
- ``delayed``            sorted set: jobs waiting out a retry backoff, scored by when they are due.
- ``cancelling``         sorted set: running jobs asked to cancel, scored by the request time;
  a worker finishes the cancel itself if the holder is gone (no free slot needed).
- ``dead``               list: the dead-letter records (JSON), newest first; trimmed by age.
- ``idem:<key>``         idempotency key -> job id.
- ``output:<sha1>``      an output path claimed by a job: "<job id> <path relative to the output
  root>". A job writes only outputs it claimed; it expires with the job.
- ``events``             stream of every state change (capped: history, not work).
- ``workers``            sorted set: names of ``worker serve`` processes, scored by their last
  heartbeat; entries a day old are dropped by the next heartbeat of any worker.
- ``worker:<name>``      a worker's presence (JSON: host, pid, slots, running jobs, fps), set
  each heartbeat and expiring after two leases: what ``worker dashboard`` lists.
- ``monitor:events``     stream of ``worker monitor`` events (camera states, watch rules),
  field ``event`` (JSON); capped like ``events``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CONSUMER_IDLE_MS",
    "EVENTS_MAXLEN",
    "GROUP",
    "HANDBACK_CONSUMER",
    "HANDBACK_IDLE_MS",
    "PRIORITIES",
    "STATES",
    "TERMINAL",
    "Keys",
    "Priority",
    "State",
]

Priority = Literal["high", "normal", "low"]
#: Highest first: a worker looks at ``high`` before ``normal`` before ``low``.
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")

State = Literal["queued", "running", "retrying", "done", "failed", "cancelled", "dead"]
#: The order here is the order of the ``jobs:<state>`` keys passed to every Lua script.
STATES: tuple[State, ...] = ("queued", "running", "retrying", "done", "failed", "cancelled", "dead")
TERMINAL: frozenset[State] = frozenset({"done", "failed", "cancelled", "dead"})

#: The one consumer group; each worker process is a consumer in it, named
#: ``<host>-<6 random hex digits>`` (``leases.consumer_name``). Consumers with nothing pending
#: that have been idle for ``CONSUMER_IDLE_MS`` are deleted by the janitor.
GROUP = "workers"
#: A job handed back on SIGTERM stays pending under this consumer with a huge idle time, so the
#: next takeover scan of any worker picks it up at once instead of after a full lease.
HANDBACK_CONSUMER = "handed-back"
HANDBACK_IDLE_MS = 365 * 86_400_000
#: Approximate cap of the events stream (``XADD MAXLEN ~``); it is also trimmed by age.
EVENTS_MAXLEN = 100_000
#: A consumer with nothing pending, idle this long, is removed from the group.
CONSUMER_IDLE_MS = 3_600_000


@dataclass(frozen=True)
class Keys:
    """The key names of one queue."""

    queue: str

    @property
    def prefix(self) -> str:
        return f"vw:{self.queue}:"

    def stream(self, priority: str) -> str:
        return f"{self.prefix}stream:{priority}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def state(self, state: str) -> str:
        return f"{self.prefix}jobs:{state}"

    def idem(self, key: str) -> str:
        return f"{self.prefix}idem:{key}"

    def output(self, relative: str) -> str:
        """The claim key of an output path (relative to the output root, POSIX form)."""
        return f"{self.prefix}output:{hashlib.sha1(relative.encode()).hexdigest()}"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}delayed"

    @property
    def cancelling(self) -> str:
        return f"{self.prefix}cancelling"

    @property
    def dead(self) -> str:
        return f"{self.prefix}dead"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    def worker(self, name: str) -> str:
        return f"{self.prefix}worker:{name}"

    @property
    def monitor_events(self) -> str:
        return f"{self.prefix}monitor:events"

    def for_job(self, job_id: str, priority: str) -> list[str]:
        """The KEYS every Lua script gets, in this order: job, stream, delayed, dead, events,
        cancelling, then one sorted set per state in ``STATES`` order (the scripts move ids
        between them).
        """
        return [
            self.job(job_id),
            self.stream(priority),
            self.delayed,
            self.dead,
            self.events,
            self.cancelling,
            *(self.state(s) for s in STATES),
        ]
