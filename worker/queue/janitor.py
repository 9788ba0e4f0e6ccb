"""Housekeeping every worker does on the side, so the queue stays tidy after months of jobs.

Nothing here runs a job. Each piece is safe to run by many workers at once (each step is one
Lua script or an idempotent command) and each is cheap enough for the worker's loop:

- **cancels** of running jobs whose holder is gone (killed, machine lost) are finished after
  one lease, by whichever worker looks first, whether or not it has a free slot;
- **temporaries** (``.<name>.<random>.part``) a killed attempt left beside a job's outputs are
  removed when the job ends without running again, and swept for every claimed output whose
  job is not running;
- **expired jobs** leave their ids in the state sets: trimmed; dead letters and the events
  stream are trimmed by age; consumers with nothing pending, idle for an hour, are deleted.
"""

from __future__ import annotations

import glob
import logging
import shutil
import time
from pathlib import Path
from typing import Any, cast

import redis.exceptions

from worker.constants import CONSUMER_IDLE_MS, GROUP, PRIORITIES, TERMINAL
from worker.errors import JobError
from worker.queue.client import Queue
from worker.queue.jobs import JobSpec, outputs_for, parse_spec

__all__ = ["Janitor", "remove_parts"]

log = logging.getLogger(__name__)

#: A temporary not written to for this long (in leases) has no live writer.
_QUIET_LEASES = 1.0
#: Calls of an approximate XTRIM per sweep (each removes up to 10,000 entries).
_TRIM_ROUNDS = 100


def remove_parts(finals: list[Path], *, older_than_s: float = 0.0) -> int:
    """Delete the temporaries ``AtomicFile`` leaves beside ``finals`` (named
    ``.<final name>.<random>.part``): only ours, and only those untouched for ``older_than_s``."""
    removed = 0
    cutoff = time.time() - older_than_s
    for final in finals:
        for part in final.parent.glob(f".{glob.escape(final.name)}.*.part"):
            try:
                if older_than_s and part.stat().st_mtime > cutoff:
                    continue
                if part.is_dir():  # an AtomicDir's folder (mask pictures, snapshots)
                    shutil.rmtree(part)
                else:
                    part.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


class Janitor:
    """The housekeeping of one worker process."""

    def __init__(
        self, queue: Queue, consumer: str, *, consumer_idle_ms: int = CONSUMER_IDLE_MS
    ) -> None:
        self.queue = queue
        self.consumer = consumer
        self.consumer_idle_ms = consumer_idle_ms

    # ------------------------------------------------------------------------------ jobs

    def spec_of(self, job_id: str) -> JobSpec | None:
        raw = self.queue.client.hget(self.queue.keys.job(job_id), "spec")
        try:
            return parse_spec(str(raw)) if raw else None
        except JobError:
            return None

    def clean_outputs(self, spec: JobSpec, *, older_than_s: float = 0.0) -> int:
        """Remove a job's temporaries (its worker was killed mid-write)."""
        try:
            finals = list(outputs_for(spec, self.queue.settings.output_root))
        except JobError:
            return 0
        removed = remove_parts(finals, older_than_s=older_than_s)
        if removed:
            log.info("job %s: removed %d abandoned temporary file(s)", spec.id, removed)
        return removed

    def reap_cancels(self) -> list[str]:
        """Finish the cancels of running jobs whose holder stopped renewing a lease ago."""
        q = self.queue
        lease_ms = int(q.settings.lease_s * 1000)
        done = []
        for job_id in cast(list[str], q.client.zrange(q.keys.cancelling, 0, 99)):
            priority = str(q.client.hget(q.keys.job(job_id), "priority") or "normal")
            answer = q.scripts.reap(
                keys=q.keys.for_job(job_id, priority), args=[job_id, GROUP, lease_ms]
            )
            if answer == "cancelled":
                log.info("job %s: cancelled (its worker is gone)", job_id)
                spec = self.spec_of(job_id)
                if spec is not None:
                    self.clean_outputs(spec)
                done.append(job_id)
        return done

    # ------------------------------------------------------------------------------ sweep

    def sweep(self) -> dict[str, int]:
        """The periodic part: expired ids, old dead letters and events, idle consumers,
        abandoned temporaries. Returns what it did, by kind."""
        return {
            "ids": self._trim_state_sets(),
            "dead_letters": self._trim_dead_letters(),
            "events": self._trim_events(),
            "consumers": self._forget_idle_consumers(),
            "temporaries": self._sweep_temporaries(),
        }

    def _server_time(self) -> float:
        secs, micros = self.queue.client.time()
        return float(secs) + micros / 1e6

    def _trim_state_sets(self) -> int:
        """Ids whose job hash has expired, from the final states' sets."""
        q, s = self.queue, self.queue.settings
        now = self._server_time()
        trimmed = 0
        for state in TERMINAL:
            ttl = s.dead_ttl_s if state == "dead" else s.result_ttl_s
            if not ttl:
                continue
            # Scored by when the job got there: those before now - ttl have expired (a job
            # requeued and finished again has a newer score).
            old = cast(list[str], q.client.zrangebyscore(q.keys.state(state), "-inf", now - ttl))
            for start in range(0, len(old), 500):
                chunk = old[start : start + 500]
                pipe = q.client.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.exists(q.keys.job(job_id))
                gone = [j for j, alive in zip(chunk, pipe.execute(), strict=True) if not alive]
                if gone:
                    trimmed += int(q.client.zrem(q.keys.state(state), *gone))
        return trimmed

    def _trim_dead_letters(self) -> int:
        ttl = self.queue.settings.dead_ttl_s
        return self.queue.trim_dead_letters(self._server_time() - ttl) if ttl else 0

    def _trim_events(self) -> int:
        """State-change history older than the longest retention time."""
        s = self.queue.settings
        if not s.result_ttl_s or not s.dead_ttl_s:
            return 0
        keep_s = max(s.result_ttl_s, s.dead_ttl_s)
        min_id = f"{int((self._server_time() - keep_s) * 1000)}-0"
        trimmed = 0
        # An approximate trim removes whole nodes, at most 100 of them per call: repeat.
        for _ in range(_TRIM_ROUNDS):
            n = int(self.queue.client.xtrim(self.queue.keys.events, minid=min_id, approximate=True))
            trimmed += n
            if not n:
                break
        return trimmed

    def _forget_idle_consumers(self) -> int:
        q = self.queue
        forgotten = 0
        for p in PRIORITIES:
            stream = q.keys.stream(p)
            try:
                consumers: list[dict[str, Any]] = q.client.xinfo_consumers(stream, GROUP)
            except redis.exceptions.ResponseError:
                continue  # no stream or no group yet
            for c in consumers:
                name = str(c["name"])
                idle_ms = self.consumer_idle_ms
                if name == self.consumer or int(c["pending"]) or int(c["idle"]) < idle_ms:
                    continue
                forgotten += int(q.scripts.forget(keys=[stream], args=[GROUP, name, idle_ms]))
        return forgotten

    def _sweep_temporaries(self) -> int:
        """Temporaries beside every claimed output whose job is not running, untouched for a
        lease (a writer that is alive keeps its file fresh)."""
        q = self.queue
        removed = 0
        quiet_s = q.settings.lease_s * _QUIET_LEASES
        for key in q.client.scan_iter(match=f"{q.keys.prefix}output:*", count=500):
            holder = q.client.get(key)
            if not holder:
                continue
            job_id, _, name = str(holder).partition(" ")
            if q.client.hget(q.keys.job(job_id), "state") == "running":
                continue
            final = q.settings.output_root.resolve() / name
            if q.settings.output_root.resolve() not in final.parents:
                continue  # a claim written by hand: never reach outside the root
            removed += remove_parts([final], older_than_s=quiet_s)
        if removed:
            log.info("removed %d abandoned temporary file(s) of jobs not running", removed)
        return removed
