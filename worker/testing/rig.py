"""A queue of a test's (or a benchmark's) own: its folders (in, out, models), its own
redis-server (``RedisServer``: ``--save ""``, AOF as asked), ``worker`` processes with a short
lease and heartbeat, and what to look at afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.queue.client import Queue
from worker.settings import Settings
from worker.testing.cli import clean_env, worker_cli
from worker.testing.redis_server import RedisServer
from worker.testing.waiting import DEADLINE_S, free_port

__all__ = [
    "LONG",
    "Rig",
    "WorkerProc",
    "done_events",
    "files_under",
    "mid_job",
    "settings_from",
    "state_of",
    "worker_env",
]


def worker_env(root: Path, redis_url: str, **settings: Any) -> dict[str, str]:
    """The environment of a ``worker`` process: short lease and heartbeat, the test's roots."""
    values: dict[str, Any] = {
        "REDIS_URL": redis_url,
        "INPUT_ROOT": root / "in",
        "OUTPUT_ROOT": root / "out",
        "MODEL_ROOT": root / "models",
        "LEASE_S": 2,
        "HEARTBEAT_S": 0.2,
        "RETRY_BASE_S": 0.2,
        "RETRY_MAX_S": 1,
        "METRICS_PORT": 0,
        "THREADS": 1,
        "HEARTBEAT_FILE": root / "heartbeat.json",
    }
    values.update({k.upper(): v for k, v in settings.items()})
    return clean_env(**values)


def settings_from(env: dict[str, str]) -> Settings:
    """The same settings in this process (for submitting and inspecting)."""
    fields: dict[str, Any] = {}
    for k, v in env.items():
        if k.startswith("WORKER_"):
            # Lists come as JSON in the environment, as pydantic-settings reads them there.
            fields[k[len("WORKER_") :].lower()] = json.loads(v) if v.startswith("[") else v
    return Settings(**fields)


class WorkerProc:
    """``python -m worker <args>`` with its stderr in a file (read at any time, never blocks)."""

    def __init__(self, root: Path, env: dict[str, str], *args: str, name: str = "w") -> None:
        self.log = root / f"{name}-{free_port()}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", *args],
            cwd=root,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = DEADLINE_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker did not exit in {timeout:.0f} s:\n{self.text()}"
            ) from None
        finally:
            self._out.flush()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self._out.close()


def mid_job(q: Queue, job_id: str) -> dict[str, Any] | None:
    """The job's status once it runs and has done a frame; None before."""
    st = q.status(job_id)
    done = (st["progress"] or {}).get("done", 0)
    return st if st["state"] == "running" and done > 0 else None


def state_of(q: Queue, job_id: str) -> str:
    return str(q.status(job_id)["state"])


def done_events(q: Queue) -> dict[str, int]:
    """How many times each job was recorded done: exactly-once means 1 for each."""
    counts: dict[str, int] = {}
    for e in q.events():
        if e["event"] == "done":
            counts[e["job"]] = counts.get(e["job"], 0) + 1
    return counts


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


#: Long enough (several seconds on this machine) to be caught mid-run, and then some.
LONG = {"frames": 1000, "width": 320, "height": 240}


@dataclass
class Rig:
    """One test's queue: its folders (in, out, models), its own redis-server, its workers."""

    root: Path
    redis: RedisServer
    env: dict[str, str]
    procs: list[WorkerProc] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.root / "out"

    def queue(self, **settings: Any) -> Queue:
        env = {**self.env, **{f"WORKER_{k.upper()}": str(v) for k, v in settings.items()}}
        return Queue(settings_from(env))

    def worker(self, *args: str, name: str = "w", **settings: Any) -> WorkerProc:
        env = {**self.env, **{f"WORKER_{k.upper()}": str(v) for k, v in settings.items()}}
        proc = WorkerProc(self.root, env, "serve", *args, name=name)
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, **settings: Any) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **{f"WORKER_{k.upper()}": str(v) for k, v in settings.items()}}
        return worker_cli(self.root, *args, env=env)

    def outputs(self, job_id: str) -> list[str]:
        return files_under(self.out / job_id) if (self.out / job_id).exists() else []

    def parts(self) -> list[str]:
        return [f for f in files_under(self.out) if f.endswith(".part")]
