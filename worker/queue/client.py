"""The client side of the job queue: submit, status, cancel, list.

``Queue`` wraps one Redis connection and the Lua scripts; ``worker.queue.leases`` adds the worker's
side (taking jobs, renewing leases, finishing). Every state change is one script call, so a
client that loses a reply can simply call again (submit re-uses the job id it generated).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, cast

import redis
import redis.exceptions

from worker.constants import GROUP, PRIORITIES, STATES, TERMINAL, Keys, Priority
from worker.errors import JobError, JobNotFoundError
from worker.queue.connection import connect
from worker.queue.jobs import JobOptions, JobSpec, new_job_id, relative_inside, stored_input, view
from worker.queue.scripts import Scripts
from worker.settings import Settings

__all__ = ["Queue"]


class Queue:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else connect(settings)
        self.keys = Keys(settings.queue)
        self.scripts = Scripts(self.client)

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
        options: JobOptions | None = None,
    ) -> JobSpec:
        """A checked job: paths resolved and refused if outside their roots.

        If the input root exists here, a missing input is refused now rather than by a worker
        later; where it does not (the submitter does not mount it), workers check.
        """
        s = self.settings
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
        except ValueError as e:
            raise JobError(f"job: {e}") from None
        if spec.output is not None and not spec.output.lower().endswith(".mp4"):
            raise JobError(f"output '{output}': expected a file name ending in .mp4")
        return spec

    def submit(self, spec: JobSpec) -> tuple[str, bool]:
        """Queue ``spec``; returns (job id, created). With a known ``key``: that job, False."""
        keys = self.keys.for_job(spec.id, spec.priority)
        keys.append(self.keys.idem(spec.key or "-"))
        job_id, created = self.scripts.submit(
            keys=keys,
            args=[
                spec.id,
                spec.to_json(),
                spec.priority,
                spec.key or "",
                self.settings.idempotency_ttl_s,
                "" if spec.deadline_s is None else repr(spec.deadline_s),
                GROUP,
            ],
        )
        return str(job_id), created == "1"

    # ------------------------------------------------------------------------------ read

    def raw(self, job_id: str) -> dict[str, str]:
        h = cast(dict[str, str], self.client.hgetall(self.keys.job(job_id)))
        if not h:
            raise JobNotFoundError(f"job '{job_id}': not found in queue '{self.settings.queue}'")
        return h

    def status(self, job_id: str) -> dict[str, Any]:
        return view(self.raw(job_id))

    def watch(self, job_id: str, interval: float = 0.5) -> Iterator[dict[str, Any]]:
        """The status each time it changes, until the job is in a final state."""
        last: dict[str, Any] | None = None
        while True:
            now = self.status(job_id)
            if now != last:
                yield now
                last = now
            if now["state"] in TERMINAL:
                return
            time.sleep(interval)

    def jobs(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Jobs in ``state`` (all states if None), most recently changed first."""
        states = [state] if state else list(STATES)
        ids: list[tuple[str, float]] = []
        for s in states:
            ids += cast(
                list[tuple[str, float]],
                self.client.zrevrange(self.keys.state(s), 0, limit - 1, withscores=True),
            )
        ids.sort(key=lambda pair: -pair[1])
        pipe = self.client.pipeline(transaction=False)
        for job_id, _ in ids[:limit]:
            pipe.hgetall(self.keys.job(job_id))
        return [view(h) for h in pipe.execute() if h]

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The dead-letter records, newest first (malformed payloads have no job behind them)."""
        out = []
        for raw in self.client.lrange(self.keys.dead, 0, limit - 1):
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                out.append({"raw": raw})
        return out

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
