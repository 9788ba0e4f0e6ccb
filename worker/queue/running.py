"""A job running in one of a worker's slots, and what the way it ended means for it.

``Running`` is what the worker's loop and the job's thread share (the lease, the cancel
flag and why it was set, progress); ``classify`` turns how a job ended into its outcome.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from worker.errors import (
    Cancelled,
    InputError,
    JobError,
    LeaseLost,
    ModelError,
    SettingsError,
    WorkerError,
)
from worker.queue.leases import Lease, Outcome

__all__ = ["Running", "classify", "one_line"]

#: Why the loop stopped a job -> what that makes of it (the exception is then just how the
#: job's pipeline stopped).
_REASONS: dict[str, tuple[Outcome | str, str]] = {
    "lease": ("lost", "another worker holds the job now"),
    "cancel": ("cancelled", "cancelled by request"),
    "deadline": ("failed", "deadline passed while running"),
    "shutdown": ("handback", "worker shutting down"),
}


def one_line(e: BaseException) -> str:
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return text if isinstance(e, WorkerError) else f"{type(e).__name__}: {text}"


@dataclass
class Running:
    """A job running in one slot, as the loop and its thread share it."""

    lease: Lease
    slot: int
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None  # why ``cancel`` was set: cancel, deadline, lease, shutdown
    done: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)
    last_beat: float = field(default_factory=time.monotonic)
    last_progress: float = 0.0
    reporting: bool = False  # its outcome is being recorded: the loop stops renewing
    finished: threading.Event = field(default_factory=threading.Event)

    def on_frame(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total  # called per frame: plain stores, nothing more

    def progress(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        fps = self.done / elapsed if elapsed > 0 else 0.0
        return {"done": self.done, "total": self.total, "fps": round(fps, 2)}

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.cancel.set()


def classify(reason: str | None, e: BaseException) -> tuple[Outcome | str, str]:
    """Why a job ended early decides what happens to it: the loop's ``reason`` first, then
    the kind of error: bad input fails for good, anything else is tried again."""
    if isinstance(e, LeaseLost):
        return "lost", one_line(e)
    if reason in _REASONS:
        return _REASONS[reason]
    if isinstance(e, (JobError, InputError, ModelError, SettingsError)):
        return "failed", one_line(e)  # bad input: the same job would fail again
    if isinstance(e, Cancelled):
        return "retry", f"stopped unexpectedly: {one_line(e)}"
    if not isinstance(e, Exception):
        raise e  # KeyboardInterrupt, SystemExit: not ours to swallow
    return "retry", one_line(e)  # a decoder hiccup, a full disk, a lost GPU: try again
