"""A redis-server of a test's (or a benchmark's) own, on a free port, its data in a folder of
its own: started, killed and started again at will; the machine's shared Redis is never
touched."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import redis

from worker.testing.waiting import free_port, wait_for

__all__ = ["RedisServer"]


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
