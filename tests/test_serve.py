"""``worker.queue.serve`` with a trivial handler and no video: the loop alone keeps leases,
retries, cancels, progress and outcomes right, whatever the jobs do (a real Redis, in-process
servers)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.errors import JobError
from worker.queue.client import Queue
from worker.queue.handler import JobContext
from worker.queue.jobs import JobSpec
from worker.queue.serve import Server
from worker.settings import Settings
from worker.testing import RedisServer, wait_for


class Trivial:
    """Does what a job's input file says: ``ok``, ``bad`` (bad input), ``flaky`` (fails
    once), ``boom`` (always fails), ``wait`` (runs until cancelled), ``progress``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[str] = []
        self.running = threading.Event()

    def __call__(self, spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
        what = (self.root / spec.input).read_text().strip()
        self.calls.append(what)
        if what == "bad":
            raise JobError(f"input '{self.root / spec.input}': not what this handler takes")
        if what == "flaky" and self.calls.count("flaky") == 1:
            raise RuntimeError("a hiccup")
        if what == "boom":
            raise RuntimeError("always")
        if what in ("wait", "progress"):
            ctx.on_frame(5, 10)
            self.running.set()
            ctx.cancel.wait(30)
        ctx.before_commit()
        return {"did": what, "slot": ctx.slot}

    def shown(self, text: str) -> str:
        return text.replace(f"{self.root}/", "")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    yield server.url
    server.kill()


def settings(tmp_path: Path, redis_url: str, **more: Any) -> Settings:
    (tmp_path / "in").mkdir(exist_ok=True)
    return Settings(
        redis_url=redis_url, input_root=tmp_path / "in", output_root=tmp_path / "out",
        lease_s=2, heartbeat_s=0.1, retry_base_s=0.05, retry_max_s=0.1, max_attempts=3,
        metrics_port=0, heartbeat_file=tmp_path / "hb.json", **more,
    )  # fmt: skip


def submit(q: Queue, root: Path, what: str, name: str) -> str:
    (root / "in" / name).write_text(what)
    job_id, _ = q.submit(q.make_spec(input=name))
    return job_id


def test_outcomes_follow_what_the_handler_did(tmp_path: Path, redis_url: str) -> None:
    s = settings(tmp_path, redis_url, burst=True)
    q = Queue(s)
    jobs = {
        what: submit(q, tmp_path, what, f"{what}.txt") for what in ("ok", "bad", "flaky", "boom")
    }
    handler = Trivial(tmp_path / "in")
    assert Server(s, handler, install_signals=False).serve() == 0  # burst: drained, then out
    st = {what: q.status(job_id) for what, job_id in jobs.items()}
    assert (st["ok"]["state"], st["ok"]["result"]) == ("done", {"did": "ok", "slot": 0})
    # Bad input fails at once, named as the submitter names it; its error passed ``shown``.
    assert (st["bad"]["state"], st["bad"]["attempts"]) == ("failed", 1)
    assert st["bad"]["error"] == "input 'bad.txt': not what this handler takes"
    assert (st["flaky"]["state"], st["flaky"]["attempts"]) == ("done", 2)  # retried once
    assert (st["boom"]["state"], st["boom"]["attempts"]) == ("dead", 3)  # max_attempts
    assert st["boom"]["error"] == "RuntimeError: always"
    assert handler.calls.count("boom") == 3


def test_a_cancel_reaches_a_running_job_and_progress_reaches_redis(
    tmp_path: Path, redis_url: str
) -> None:
    s = settings(tmp_path, redis_url)
    q = Queue(s)
    job_id = submit(q, tmp_path, "progress", "p.txt")
    handler = Trivial(tmp_path / "in")
    server = Server(s, handler, install_signals=False)
    loop = threading.Thread(target=server.serve, daemon=True)
    loop.start()
    try:
        wait_for(handler.running.is_set, "the job to start")
        wait_for(lambda: (q.status(job_id)["progress"] or {}).get("done") == 5, "progress")
        assert q.status(job_id)["progress"]["total"] == 10
        q.cancel(job_id)
        wait_for(lambda: q.status(job_id)["state"] == "cancelled", "the cancel")
    finally:
        server.stop(grace_s=0)
        loop.join(30)
    assert not loop.is_alive()
    assert q.status(job_id)["result"] is None  # a cancelled job publishes nothing


def test_the_loop_loads_nothing_of_video() -> None:
    # The loop can be read, run and tested without a decoder, a model runtime or OpenCV.
    heavy = "{'av', 'cv2', 'onnxruntime', 'numpy'}"
    code = f"import sys, worker.queue.serve; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
