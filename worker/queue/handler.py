"""What the worker's loop (``worker.queue.serve``) asks of the work it runs: a handler,
``spec + context -> result``, and the context it gives each job. Nothing here knows video:
``worker.queue.video_job`` is the handler ``worker serve`` runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from worker.queue.jobs import JobSpec

__all__ = ["JobContext", "JobHandler"]


@dataclass(frozen=True)
class JobContext:
    """What the worker's loop gives a job besides its spec."""

    slot: int  # which of the worker's slots runs it (0 .. concurrency - 1)
    cancel: threading.Event  # set when the job must stop (cancel, deadline, lease, shutdown)
    on_frame: Callable[[int, int | None], None]  # progress: frames done, of how many
    before_commit: Callable[[], None]  # right before publishing: raises if the job is lost


class JobHandler(Protocol):
    def __call__(self, spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
        """Run the job; its result, or an exception saying why not (``worker.queue.serve``
        decides from its kind whether the job is retried)."""
        ...

    def shown(self, text: str) -> str:
        """A result or an error as the submitter may read it."""
        ...
