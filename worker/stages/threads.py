"""The threads of one pipeline: each stage's body runs guarded, the first failure is kept and
stops the others, and the caller's thread joins them within a grace period.

A stage that ends because another asked everyone to stop (``Stopped``) is not a failure.
Whoever started the threads re-raises the first failure in its own thread (``raise_first``),
naming the stage: threads pass their exceptions back, and a failing stage stops the pipeline
instead of leaving it hanging.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable

from worker.collector import release
from worker.errors import StageError, WorkerError
from worker.stages.channels import Stopped

__all__ = ["Threads"]


def name_os_thread(name: str) -> None:
    """This thread's name as the OS shows it (``top -H``, ``/proc/PID/task/TID/comm``; 15
    bytes at most), so a profile tells the stages apart; threads a library starts from this
    one (x264's) are called the same. Best effort, Linux only."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class Threads:
    def __init__(self, stop: threading.Event, prefix: str = "worker-") -> None:
        self.stop = stop
        self.prefix = prefix
        self.failures: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def fail(self, stage: str, e: BaseException) -> None:
        """Record a stage's failure (the first one wins) and ask every stage to stop."""
        with self._lock:
            self.failures.append((stage, e))
        self.stop.set()

    def add(self, stage: str, body: Callable[[], None], *, name: str | None = None) -> None:
        """A thread for ``stage`` (not started yet); its thread is called ``prefix + name``."""

        thread_name = f"{self.prefix}{name or stage}"

        def target() -> None:
            name_os_thread(thread_name)
            try:
                body()
            except Stopped:
                pass
            except BaseException as e:
                self.fail(stage, e)

        self._threads.append(threading.Thread(target=target, name=thread_name, daemon=True))

    def start(self) -> None:
        release()  # start-up is over: see worker.collector
        for t in self._threads:
            t.start()

    def wait(self, poll_s: float = 0.1) -> None:
        """Until every thread ended or a stop was asked for."""
        while any(t.is_alive() for t in self._threads):
            for t in self._threads:
                t.join(poll_s)
            if self.stop.is_set():
                return

    def join(self, grace_s: float) -> list[str]:
        """Wait up to ``grace_s`` for every started thread; the names of those still running."""
        deadline = time.monotonic() + grace_s
        for t in self._threads:
            if t.ident is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    def raise_first(self) -> None:
        """The first failure, as it was if it is ours (a ``WorkerError``), else as a
        ``StageError`` naming its stage."""
        if not self.failures:
            return
        stage, err = self.failures[0]
        if isinstance(err, WorkerError):
            raise err
        raise StageError(stage, f"{type(err).__name__}: {err}") from err
