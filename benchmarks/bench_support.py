"""Measuring helpers for the benchmarks: phases (wall, CPU, peak RSS, what other processes
used meanwhile), per-stage timers, per-thread CPU of a running pipeline, the environment, and
inputs made by copying packets (a long video in a second, without re-encoding).

Linux only where it reads /proc; elsewhere the numbers it cannot get are None.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import onnxruntime as ort
from child_support import Stages

from worker.cli.bench import machine_busy_s
from worker.testing import clean_env, make_video, walkers

__all__ = [
    "ChildRun",
    "Phase",
    "Stages",
    "ThreadSampler",
    "compile_worker",
    "environment",
    "measure",
    "repeat_video",
    "run_child",
    "run_worker",
]


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Phase:
    """Wall time, CPU time (all threads) and peak RSS of one phase."""

    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    start_rss_mib: float | None = None
    peak_rss_mib: float | None = None
    peak_is_phase: bool = False  # False: the process's peak so far (the reset did not work)
    other_cpu_s: float | None = None  # CPU time other processes used meanwhile

    @property
    def others_busy(self) -> float | None:
        if self.other_cpu_s is None or self.wall_s <= 0:
            return None
        return max(0.0, self.other_cpu_s / self.wall_s)

    @property
    def cores_busy(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@contextmanager
def measure(name: str, phases: dict[str, Phase]) -> Iterator[Phase]:
    """Time a block; reset the kernel's RSS high-water mark first so the peak is this block's."""
    phase = Phase(name)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM (Linux >= 4.0)
        phase.peak_is_phase = True
    except OSError:
        phase.peak_is_phase = False
    rss = _status_kib("VmRSS")
    phase.start_rss_mib = None if rss is None else rss / 1024
    t0, c0, m0 = time.perf_counter(), os.times(), machine_busy_s()
    try:
        yield phase
    finally:
        c1, m1 = os.times(), machine_busy_s()
        phase.wall_s = time.perf_counter() - t0
        phase.cpu_s = (c1.user - c0.user) + (c1.system - c0.system)
        if m0 is not None and m1 is not None:
            phase.other_cpu_s = (m1 - m0) - phase.cpu_s
        hwm = _status_kib("VmHWM") if phase.peak_is_phase else None
        if hwm is None:
            phase.peak_is_phase = False
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        phase.peak_rss_mib = hwm / 1024
        phases[name] = phase


def environment() -> dict[str, Any]:
    """Versions and the checkout, so that numbers can be compared across runs."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "av": av.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        env["git"] = rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        env["git"] = None
    return env


# ------------------------------------------------------------------------------ threads


def stat_cpu_s(stat_path: str) -> float:
    """User + system CPU seconds of the process or thread whose ``/proc/.../stat`` this is
    (the name in parentheses may hold spaces, so fields are counted after its ``)``)."""
    with open(stat_path, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """tid -> (kernel thread name, CPU seconds so far) for every thread of this process."""
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            cpu = stat_cpu_s(f"/proc/self/task/{tid}/stat")
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as f:
                comm = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (comm, cpu)
    return out


@dataclass
class ThreadSampler:
    """CPU seconds per group of threads while a block runs (``with sampler:``).

    Threads are sampled every ``interval_s`` (a thread that ends loses at most its last
    interval). Groups: the worker's Python stage threads by name; FFmpeg's decoder threads
    ("av:..."); unnamed native threads that already existed or were made before the stage
    threads (ONNX Runtime's intra-op pool); unnamed ones made after them (x264's threads).
    """

    interval_s: float = 0.2
    groups: dict[str, float] = field(default_factory=dict)
    _before: dict[int, tuple[str, float]] = field(default_factory=dict)
    _last: dict[int, tuple[str, float]] = field(default_factory=dict)
    _names: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        self._last.update(_thread_cpu())
        for t in threading.enumerate():
            if t.native_id is not None:
                self._names[t.native_id] = t.name

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> ThreadSampler:
        self._before = _thread_cpu()
        self._last = dict(self._before)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        stage_tids = [t for t, n in self._names.items() if n.startswith("worker-")]
        first_stage = min(stage_tids, default=0)
        main = threading.main_thread().native_id
        self.groups = {}
        for tid, (comm, cpu) in self._last.items():
            spent = cpu - self._before.get(tid, (comm, 0.0))[1]
            if spent <= 0:
                continue
            name = self._names.get(tid, "")
            if name.startswith("worker-"):
                group = name.removeprefix("worker-") + " thread"
            elif comm.startswith("av:"):
                group = "decoder threads"
            elif tid == main:
                group = "main thread"
            elif name == "bench-sampler":
                group = "sampler"
            elif tid in self._before or tid < first_stage:
                group = "onnxruntime pool"
            else:
                group = "x264 threads"
            self.groups[group] = self.groups.get(group, 0.0) + spent

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        n = max(frames, 1)
        return {k: round(1000 * v / n, 2) for k, v in sorted(self.groups.items())}


# ------------------------------------------------------------------------------ inputs


def walkers_720(path: Path, frames: int) -> Path:
    """The benchmarks' camera-like clip: walkers over textured pavement, 1280x720, 25 fps,
    ``frames`` long, H.264 at crf 23 (flat synthetic video would make decoding and encoding
    look several times cheaper than camera footage)."""
    return make_video(path, frames=frames, width=1280, height=720, image=walkers(), crf=23)


def repeat_video(src: Path, dst: Path, times: int) -> int:
    """``src`` played ``times`` times in a row, by copying its packets with shifted
    timestamps (no re-encoding: seconds, not minutes, for a long input). Returns frames."""
    with av.open(str(src)) as first:
        stream = first.streams.video[0]
        packets = [p for p in first.demux(stream) if p.size]
        start = min(p.pts for p in packets if p.pts is not None)
        end = max(p.pts + (p.duration or 0) for p in packets if p.pts is not None)
    span = end - start
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), mode="w") as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        for k in range(times):
            inp.seek(0)
            for p in inp.demux(s_in):
                if not p.size:
                    continue
                if p.pts is not None:
                    p.pts += k * span
                if p.dts is not None:
                    p.dts += k * span
                p.stream = s_out
                out.mux(p)
                n += 1
    return n


@dataclass
class ChildRun:
    """A fresh Python process: exit code, wall and CPU time, its own peak RSS, its output."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float | None
    stdout: str
    stderr: str


def compile_worker() -> None:
    """The worker's modules compiled to bytecode, as ``pip install`` leaves a wheel: a machine
    with PYTHONDONTWRITEBYTECODE set (this one) would otherwise compile them from source at
    every start (~0.1 s), which no installed copy does."""
    import compileall

    import worker

    compileall.compile_dir(str(Path(worker.__file__).parent), quiet=1)


def run_child(argv: list[str], cwd: Path | None = None) -> ChildRun:
    """``python *argv`` in a fresh process (this interpreter); its peak RSS is what it prints
    with ``child_support.print_peak_rss`` before it exits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=clean_env(), capture_output=True, text=True,
        timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = None
    lines = []
    for line in proc.stderr.splitlines():
        if line.startswith("VmHWM_KIB="):
            value = line.removeprefix("VmHWM_KIB=")
            peak = int(value) / 1024 if value.isdigit() else None
        else:
            lines.append(line)
    return ChildRun(proc.returncode, wall, cpu, peak, proc.stdout, "\n".join(lines))


# The worker's command as its console script runs it (``worker.entry.command``: start-up and
# exit included), and the process's peak RSS from an exit handler (the command runs them).
_WORKER = """
import atexit, sys
from child_support import print_peak_rss
from worker.entry import command
atexit.register(print_peak_rss)
sys.argv = ["worker", *sys.argv[1:]]
command()
"""


def run_worker(args: list[str], cwd: Path | None = None) -> ChildRun:
    """``worker *args`` in a fresh process, with its peak RSS."""
    here = str(Path(__file__).resolve().parent)
    return run_child(["-c", f"import sys; sys.path.insert(0, {here!r})\n" + _WORKER, *args], cwd)
