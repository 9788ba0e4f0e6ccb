"""Real parts for the queue tests: redis-server processes on free ports, ``worker serve``
processes, and polling with a deadline (never a bare sleep standing in for a condition).

Each test starts its own Redis (``--save ""``, AOF as asked, its data in the test's tmp_path),
so it can kill and restart it; the machine's shared Redis is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from worker.queue.client import Queue
from worker.settings import Settings

T = TypeVar("T")

#: Generous: CPU is shared with other developers' work and timings are noisy.
DEADLINE_S = 60.0
_POLL_S = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = DEADLINE_S, poll: float = _POLL_S
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class RedisServer:
    """A redis-server of the test's own; ``kill``/``start`` again keep port and data dir."""

    def __init__(
        self,
        workdir: Path,
        *,
        appendonly: bool = True,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.password = password
        self.cert: Path | None = self._make_cert() if tls else None
        self.proc: subprocess.Popen[bytes] | None = None

    def _make_cert(self) -> Path:
        """A self-signed certificate for 127.0.0.1 (openssl), the server's and the clients' CA."""
        cert = self.dir / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(self.dir / "key.pem"), "-out", str(cert),
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.cert is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.cert}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--bind", "127.0.0.1"]
        if self.cert is not None:  # TLS only: the plain port is off
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self.cert), "--tls-key-file", str(self.dir / "key.pem")]
            args += ["--tls-ca-cert-file", str(self.cert)]
        else:
            args += ["--port", str(self.port)]
        args += ["--save", "", "--dir", str(self.dir), "--logfile", "redis.log"]
        args += ["--appendonly", "yes" if self.appendonly else "no"]
        # Every write on disk before the reply: a SIGKILLed server loses nothing acknowledged.
        args += ["--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, f"redis-server on port {self.port}", timeout=20)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.exceptions.BusyLoadingError:
            return False
        except redis.exceptions.ConnectionError:
            assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
            return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.proc = None


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update({f"WORKER_{k}": str(v) for k, v in values.items()})
    return env


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


def worker_cli(
    root: Path, env: dict[str, str], *args: str, timeout: float = DEADLINE_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
        return worker_cli(self.root, env, *args)

    def outputs(self, job_id: str) -> list[str]:
        return files_under(self.out / job_id) if (self.out / job_id).exists() else []

    def parts(self) -> list[str]:
        return [f for f in files_under(self.out) if f.endswith(".part")]
