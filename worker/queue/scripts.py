"""The Lua scripts that change a job's state: each runs atomically inside Redis.

The scripts are files of their own, shipped in the package (``lua/<name>.lua``), so they read,
highlight and lint as Lua; ``prelude.lua`` is put in front of each but ``forget``.

Why Lua: a state change touches several keys (the job hash, its stream entry, the state sets,
the dead-letter list) and must be checked against the lease token in the same step. With
separate commands a worker whose lease was just taken over could still complete the job
between its check and its write; in a script nothing runs in between.

Every script gets the same KEYS (``Keys.for_job``): 1 job hash, 2 its priority's stream,
3 delayed set, 4 dead-letter list, 5 events stream, 6 cancelling set, 7..13 the
``jobs:<state>`` sets in ``STATES`` order; ``submit`` also gets 14, the idempotency key, and
15.. the claim keys of the job's outputs. Every script's last two ARGV are the retention
times (``result_ttl_s``, ``dead_ttl_s``): a job that reaches a final state expires with its
output claims after that long (0: kept). Times come from the Redis server's clock (``TIME``),
so workers with skewed clocks agree on deadlines and retries.

Keys derived inside a script (another job's hash for an idempotency key or an output claim,
a job's claim keys) are named from the job key's prefix: fine on one Redis server or a
replicated pair, not on Redis Cluster (the queue does not support Cluster).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import redis

from worker.constants import EVENTS_MAXLEN, STATES

__all__ = ["Scripts"]


def _lua(name: str) -> str:
    return (files("worker.queue") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class _Script:
    """One registered script; every call gets the retention times as its last two ARGV."""

    def __init__(self, script: Any, tail: list[int]) -> None:
        self._script = script
        self._tail = tail

    def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        return self._script(keys=keys, args=[*args, *self._tail])


class Scripts:
    """The scripts registered on one client (EVALSHA, reloaded by redis-py after a restart)."""

    def __init__(self, client: redis.Redis, *, result_ttl_s: int = 0, dead_ttl_s: int = 0) -> None:
        prelude = (
            _lua("prelude")
            .replace("@STATES@", ", ".join(f"'{s}'" for s in STATES))
            .replace("@EVENTS_MAXLEN@", str(EVENTS_MAXLEN))
        )
        tail = [result_ttl_s, dead_ttl_s]

        def reg(body: str) -> _Script:
            return _Script(client.register_script(prelude + body), tail)

        self.submit = reg(_lua("submit"))
        self.start = reg(_lua("start"))
        self.beat = reg(_lua("beat"))
        self.finish = reg(_lua("finish"))
        self.requeue = reg(_lua("requeue"))
        self.cancel = reg(_lua("cancel"))
        self.bury = reg(_lua("bury"))
        self.reap = reg(_lua("reap"))
        self.retry = reg(_lua("retry"))
        self.purge = reg(_lua("purge"))
        # Not about one job: no prelude, no retention times.
        self.forget = client.register_script(_lua("forget"))
