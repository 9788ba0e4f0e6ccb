"""The client side of the job queue: submit, status, cancel, list.

``Queue`` wraps one Redis connection and the Lua scripts; ``worker.queue.leases`` adds the worker's
side (taking jobs, renewing leases, finishing). Every state change is one script call, so a
client that loses a reply can simply call again (submit re-uses the job id it generated).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import redis
import redis.exceptions
from pydantic import ValidationError

from worker.constants import GROUP, PRIORITIES, STATES, TERMINAL, Keys, Priority
from worker.errors import JobError, JobNotFoundError
from worker.messages import plain
from worker.queue.connection import TRANSIENT, connect
from worker.queue.jobs import (
    JobSpec,
    fingerprint,
    new_job_id,
    output_names,
    stored_input,
    view,
)
from worker.queue.scripts import Scripts
from worker.retry import backoff
from worker.roots import relative_inside
from worker.settings import Settings

__all__ = ["Queue"]

#: The flag that gives each field of a job, for errors.
_FLAGS = {"deadline_s": "--deadline", "key": "--key", "priority": "--priority",
          "max_frames": "--max-frames", "options": "options"}  # fmt: skip

#: Longest pause between two tries of ``watch`` while Redis is away.
_WATCH_BACKOFF_MAX_S = 5.0


def _shown(text: str) -> str:
    """A name with bytes that are not UTF-8 shown as escapes (``\\xff``)."""
    raw = text.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes the file system gave that are not UTF-8 (surrogates)
        return False
    return True


class Queue:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else connect(settings)
        self.keys = Keys(settings.queue)
        self.scripts = Scripts(
            self.client, result_ttl_s=settings.result_ttl_s, dead_ttl_s=settings.dead_ttl_s
        )

    # ------------------------------------------------------------------------------ groups

    def ensure_groups(self) -> None:
        """Create each stream's consumer group (from the start: entries added before count)."""
        for p in PRIORITIES:
            try:
                self.client.xgroup_create(self.keys.stream(p), GROUP, id="0", mkstream=True)
            except redis.exceptions.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    # ------------------------------------------------------------------------------ submit

    def make_spec(
        self,
        *,
        input: str,
        output: str | None = None,
        model: str | None = None,
        card: str | None = None,
        task: str | None = None,
        max_frames: int | None = None,
        priority: Priority = "normal",
        deadline_s: float | None = None,
        key: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> JobSpec:
        """A checked job: paths resolved and refused if outside their roots.

        If the input root exists here, a missing input is refused now rather than by a worker
        later; where it does not (the submitter does not mount it), workers check.
        """
        s = self.settings
        for what, value in (("input", input), ("output", output), ("model", model), ("card", card)):
            if value is not None and not _utf8(value):
                raise JobError(
                    f"--{what} '{_shown(value)}': the name "
                    "is not UTF-8 text, which a job (JSON) cannot carry; rename it"
                )
        if deadline_s is not None and not 0 < deadline_s < float("inf"):
            raise JobError(f"--deadline {deadline_s:g}: expected a positive number of seconds")
        stored = stored_input(input, s.input_root, s.url_schemes)
        if "://" not in stored and s.input_root.is_dir():
            path = s.input_root.resolve() / stored
            if not path.is_file():
                raise JobError(
                    f"input '{input}': no such file under the input root '{s.input_root}'"
                )
        fields: dict[str, Any] = {
            "id": new_job_id(),
            "input": stored,
            "output": relative_inside(output, s.output_root, "output") if output else None,
            "model": relative_inside(model, s.model_root, "model") if model else None,
            "card": relative_inside(card, s.model_root, "card") if card else None,
            "task": task,
            "max_frames": max_frames,
            "priority": priority,
            "deadline_s": deadline_s if deadline_s is not None else s.deadline_s,
            "key": key,
            "options": options,
        }
        try:
            spec = JobSpec(**fields)
        except ValidationError as e:
            err = e.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "job"
            _, what = plain(err)
            raise JobError(f"{_FLAGS.get(field, field)}: {what}") from None
        if spec.output is not None and not spec.output.lower().endswith(".mp4"):
            raise JobError(f"output '{output}': expected a file name ending in .mp4")
        if spec.output is not None and s.output_root.is_dir():
            # Where the submitter sees the output root: a file that is there now is not ours to
            # replace (another job's claim is checked by ``submit``, in Redis).
            for name in output_names(spec, s.output_root):
                if (s.output_root.resolve() / name).exists():
                    raise JobError(
                        f"output '{name}': already exists under the output root; choose "
                        "another --output or remove it"
                    )
        return spec

    def submit(self, spec: JobSpec) -> tuple[str, bool]:
        """Queue ``spec``; returns (job id, created). With a ``key`` whose job is queued,
        running or done: that job, False (the same spec) or ``JobError`` (a different one).
        An output path another such job claimed is refused too."""
        names = output_names(spec, self.settings.output_root)
        keys = self.keys.for_job(spec.id, spec.priority)
        keys.append(self.keys.idem(spec.key or "-"))
        keys += [self.keys.output(n) for n in names]
        reply = self.scripts.submit(
            keys=keys,
            args=[
                spec.id,
                spec.to_json(),
                spec.priority,
                spec.key or "",
                self.settings.idempotency_ttl_s,
                "" if spec.deadline_s is None else repr(spec.deadline_s),
                GROUP,
                fingerprint(spec),
                *names,
            ],
        )
        job_id, outcome = str(reply[0]), str(reply[1])
        if outcome == "conflict":
            raise JobError(
                f"--key '{spec.key}': already names job {job_id}, which asks for something "
                "else; use another key (a key is free again once its job failed, died or was "
                "cancelled)"
            )
        if outcome == "taken":
            raise JobError(
                f"output '{reply[2]}': belongs to job {job_id}; a job writes only its own "
                "outputs: choose another --output"
            )
        return job_id, outcome == "1"

    # ------------------------------------------------------------------------------ read

    def raw(self, job_id: str) -> dict[str, str]:
        h = cast(dict[str, str], self.client.hgetall(self.keys.job(job_id)))
        if not h:
            raise JobNotFoundError(f"job '{job_id}': not found in queue '{self.settings.queue}'")
        return h

    def status(self, job_id: str) -> dict[str, Any]:
        return view(self.raw(job_id))

    def watch(
        self,
        job_id: str,
        interval: float = 0.5,
        on_outage: Callable[[Exception], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The status each time it changes, until the job is in a final state. While Redis is
        away it keeps trying, with backoff (``on_outage`` is told once per outage)."""
        last: dict[str, Any] | None = None
        failures = 0
        while True:
            try:
                now = self.status(job_id)
            except TRANSIENT as e:
                if failures == 0 and on_outage is not None:
                    on_outage(e)
                failures += 1
                time.sleep(backoff(failures + 1, interval, _WATCH_BACKOFF_MAX_S, jitter=False))
                continue
            failures = 0
            if now != last:
                yield now
                last = now
            if now["state"] in TERMINAL:
                return
            time.sleep(interval)

    def jobs(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Jobs in ``state`` (all states if None), most recently changed first: ``limit`` of
        them after skipping ``offset`` (a page)."""
        states = [state] if state else list(STATES)
        ids: list[tuple[str, float]] = []
        for s in states:
            ids += cast(
                list[tuple[str, float]],
                self.client.zrevrange(self.keys.state(s), 0, offset + limit - 1, withscores=True),
            )
        ids.sort(key=lambda pair: -pair[1])
        pipe = self.client.pipeline(transaction=False)
        for job_id, _ in ids[offset : offset + limit]:
            pipe.hgetall(self.keys.job(job_id))
        return [view(h) for h in pipe.execute() if h]

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The dead-letter records, newest first (malformed payloads have no job behind them)."""
        out = []
        for raw in self.client.lrange(self.keys.dead, offset, offset + limit - 1):
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                out.append({"raw": raw})
        return out

    # ------------------------------------------------------------------------------ operate

    def requeue(self, job_id: str) -> str:
        """A failed, dead or cancelled job queued again from scratch (attempts reset); returns
        the state after the call (the job's own state if it was in none of those)."""
        priority = str(self.client.hget(self.keys.job(job_id), "priority") or "normal")
        state = str(
            self.scripts.retry(keys=self.keys.for_job(job_id, priority), args=[job_id, GROUP])
        )
        if state == "missing":
            raise JobNotFoundError(f"job '{job_id}': not found in queue '{self.settings.queue}'")
        return state

    def purge(self, state: str, older_than_s: float = 0.0) -> int:
        """Delete the jobs that have been in final ``state`` for ``older_than_s`` or more (their
        files stay); for ``dead``, dead letters as old go too. Returns how many jobs."""
        if state not in TERMINAL:
            raise JobError(f"--state {state}: only finished jobs can be purged")
        secs, micros = self.client.time()
        cutoff = secs + micros / 1e6 - older_than_s
        ids = cast(list[str], self.client.zrangebyscore(self.keys.state(state), "-inf", cutoff))
        purged = 0
        for job_id in ids:
            priority = str(self.client.hget(self.keys.job(job_id), "priority") or "normal")
            keys = self.keys.for_job(job_id, priority)
            deleted = int(self.scripts.purge(keys=keys, args=[job_id]))
            # A job that already expired leaves only its id in the set.
            dropped = int(self.client.zrem(self.keys.state(state), job_id))
            purged += max(deleted, dropped)
        if state == "dead":
            self.trim_dead_letters(cutoff)
        return purged

    def trim_dead_letters(self, before: float) -> int:
        """Drop dead letters recorded before ``before`` (server time); the list is newest
        first, so they are at its end."""
        dropped = 0
        while True:
            last = cast(str | None, self.client.lindex(self.keys.dead, -1))
            if last is None:
                return dropped
            try:
                at = float(json.loads(last).get("at", 0))
            except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
                at = 0.0
            if at >= before:
                return dropped
            # LREM of this exact record, from the tail: a concurrent LPUSH cannot be hit.
            dropped += int(self.client.lrem(self.keys.dead, -1, last))

    def events(self, job_id: str | None = None) -> list[dict[str, str]]:
        """The state-change history (all jobs, or one), oldest first."""
        entries = cast(list[tuple[str, dict[str, str]]], self.client.xrange(self.keys.events))
        return [f for _, f in entries if job_id is None or f.get("job") == job_id]

    def depth(self) -> dict[str, int]:
        """Jobs per state (the ``jobs:<state>`` sets)."""
        pipe = self.client.pipeline(transaction=False)
        for s in STATES:
            pipe.zcard(self.keys.state(s))
        return dict(zip(STATES, (int(n) for n in pipe.execute()), strict=True))

    def waiting(self) -> dict[str, int]:
        """Entries per priority stream not yet delivered to any worker."""
        out: dict[str, int] = {}
        for p in PRIORITIES:
            stream = self.keys.stream(p)
            length = int(self.client.xlen(stream))
            try:
                pending = int(self.client.xpending(stream, GROUP)["pending"])
            except redis.exceptions.ResponseError:  # no group yet: nothing delivered
                pending = 0
            out[p] = max(0, length - pending)
        return out

    # ------------------------------------------------------------------------------ cancel

    def cancel(self, job_id: str) -> str:
        """Cancel: a queued job at once; a running one is stopped by its worker within a
        heartbeat or two. Returns the state after the call ('cancelling' while it stops)."""
        priority = str(self.client.hget(self.keys.job(job_id), "priority") or "normal")
        state = str(
            self.scripts.cancel(keys=self.keys.for_job(job_id, priority), args=[job_id, GROUP])
        )
        if state == "missing":
            raise JobNotFoundError(f"job '{job_id}': not found in queue '{self.settings.queue}'")
        return state
