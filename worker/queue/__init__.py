"""The Redis job queue: jobs and their schema (``jobs``), the client that submits and reads
them (``client``), the worker's side that takes and holds them (``leases``, ``scripts``), and
``worker serve``'s loop (``serve``).

Import-light on purpose: ``worker submit``, ``status``, ``cancel`` and ``jobs`` load only
Redis and pydantic. ``Server`` (which runs videos, so loads the models and the stages) is
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.queue.client import Queue
from worker.queue.connection import connect, describe_url, redis_errors
from worker.queue.jobs import JobSpec, parse_spec
from worker.queue.leases import Consumer, Delivery, Lease

if TYPE_CHECKING:
    from worker.queue.serve import Server

__all__ = [
    "Consumer",
    "Delivery",
    "JobSpec",
    "Lease",
    "Queue",
    "Server",
    "connect",
    "describe_url",
    "parse_spec",
    "redis_errors",
]


def __getattr__(name: str) -> Any:
    if name == "Server":
        from worker.queue.serve import Server

        return Server
    raise AttributeError(f"module 'worker.queue' has no attribute '{name}'")
