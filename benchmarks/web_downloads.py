"""Does a download cost the server its size in memory? The monitor's pages serving one large
recording to many clients at once, this process's RSS sampled throughout.

    python benchmarks/web_downloads.py [--size-mb 1024] [--clients 20] [--json]

The recording is a sparse file (no disk, and reading it costs no I/O, so the server's own
work is all that is measured) in a camera's recording folder, served by ``monitor_routes``
as ``worker monitor`` serves it. The clients are a separate process (as browsers are), each
reading the whole file as fast as it comes. Printed: RSS before, the peak while the clients
download, its growth next to what the clients received, and the throughput. Before issue 19
the server read each response whole into memory: growth was about clients x size.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from worker.description import RunDescription
from worker.live import Camera, Monitor
from worker.live.pages import monitor_routes
from worker.models import demo_model_path, load_model
from worker.web import WebServer

_NAME = "cam-20261206T120000.000Z.mp4"


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _download(port: int, got: list[int], i: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET /recordings/cam/{_NAME} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        header, body = head.split(b"\r\n\r\n", 1)
        assert header.startswith(b"HTTP/1.1 200"), header[:40]
        length = int(next(
            line.split(b":", 1)[1] for line in header.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ))  # fmt: skip
        n = len(body)
        while n < length:
            data = s.recv(1 << 20)
            if not data:
                break
            n += len(data)
        got[i] = n


def clients_child(port: int, n: int) -> None:
    """Runs in its own process: n clients each download the file; prints bytes each got."""
    got = [0] * n
    threads = [threading.Thread(target=_download, args=(port, got, i)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(got), flush=True)


def run(size_mb: int, clients: int) -> dict[str, Any]:
    model = load_model(demo_model_path("segment"), provider="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "rec"
        (rec / "cam").mkdir(parents=True)
        with (rec / "cam" / _NAME).open("wb") as f:
            f.truncate(size_mb << 20)
        # Not started: the pages only serve the folder, no camera is read.
        m = Monitor([Camera("cam", "rtsp://127.0.0.1:1/none")], model,
                    RunDescription().overlay({"record": rec}))  # fmt: skip
        web = WebServer(monitor_routes(m), 0, "127.0.0.1")
        try:
            before = peak = _rss()
            started = time.monotonic()
            child = subprocess.Popen(
                [sys.executable, __file__, "--clients-child", str(web.port), str(clients)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            while child.poll() is None:
                peak = max(peak, _rss())
                time.sleep(0.05)
            wall = time.monotonic() - started
            assert child.stdout is not None
            got = json.loads(child.stdout.read().splitlines()[-1])
        finally:
            web.close()
    total = sum(got)
    return {
        "file_mb": size_mb,
        "clients": clients,
        "complete_downloads": sum(g == size_mb << 20 for g in got),
        "rss_before_mb": round(before / 2**20, 1),
        "rss_peak_mb": round(peak / 2**20, 1),
        "rss_growth_mb": round((peak - before) / 2**20, 1),
        "sent_mb": round(total / 2**20),
        "growth_per_sent": round((peak - before) / max(total, 1), 5),
        "seconds": round(wall, 1),
        "mb_per_s": round(total / 2**20 / wall),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.add_argument("--clients-child", nargs=2, type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.clients_child:
        clients_child(*a.clients_child)
        return 0
    r = run(a.size_mb, a.clients)
    if a.json:
        print(json.dumps(r))
    else:
        print(
            f"{r['clients']} clients x {r['file_mb']} MiB file: {r['complete_downloads']} "
            f"complete, {r['sent_mb']} MiB sent in {r['seconds']} s ({r['mb_per_s']} MiB/s)\n"
            f"server RSS: {r['rss_before_mb']} MiB before, {r['rss_peak_mb']} MiB at the peak "
            f"(+{r['rss_growth_mb']} MiB; {r['growth_per_sent']:.5f} of what was sent)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
