"""Which ``worker serve`` processes are alive, as Redis knows it: each one's loop sets its
presence every heartbeat (a key that expires after two leases, and its name in a sorted set
by time), and ``worker dashboard`` reads them back. A worker that was killed shows as gone
(its key expired) for a day, then drops out of the list.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any, cast

import redis

from worker.constants import Keys

__all__ = ["FORGET_S", "publish", "read_workers", "withdraw"]

#: A worker not heard of for this long leaves the list.
FORGET_S = 86_400.0


def publish(client: redis.Redis, keys: Keys, name: str, lease_s: float, **state: Any) -> None:
    """This worker is alive, and what it is doing (``state``: JSON-able)."""
    now = time.time()
    body = {"worker": name, "host": socket.gethostname(), "pid": os.getpid(), "time": now}
    body.update(state)
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.worker(name), json.dumps(body), px=max(2000, int(2000 * lease_s)))
    pipe.zadd(keys.workers, {name: now})
    pipe.zremrangebyscore(keys.workers, "-inf", now - FORGET_S)
    pipe.execute()


def withdraw(client: redis.Redis, keys: Keys, name: str) -> None:
    """This worker stopped: out of the list at once."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.worker(name))
    pipe.zrem(keys.workers, name)
    pipe.execute()


def read_workers(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Every worker heard of in the last day, newest heartbeat first: its presence, or for one
    whose presence expired ``{"worker", "time", "gone": True}``. ``age_s`` on each."""
    now = time.time()
    seen = cast(
        list[tuple[str, float]],
        client.zrevrangebyscore(keys.workers, "+inf", now - FORGET_S, withscores=True),
    )
    if not seen:
        return []
    bodies = cast(list[str | None], client.mget([keys.worker(n) for n, _ in seen]))
    out: list[dict[str, Any]] = []
    for (name, at), body in zip(seen, bodies, strict=True):
        entry: dict[str, Any] = {"worker": name, "time": at, "gone": True}
        if body is not None:
            with contextlib.suppress(json.JSONDecodeError):  # not ours: shown as gone
                entry = {**json.loads(body), "gone": False}
        entry["age_s"] = round(max(0.0, now - float(entry.get("time") or at)), 1)
        out.append(entry)
    return out
