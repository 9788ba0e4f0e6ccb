"""Signals sent to a real ``worker run`` at random moments, on a loaded machine: what came
back. Used by ``test_signals.py`` (20 signals) and ``benchmarks/signal_storm.py`` (200).

The promise checked per trial: the process ends with 0 (the signal came too late to matter:
both outputs complete) or with 128 + the signal (nothing published, or, if the signal came
after the outputs were renamed into place, both complete); never SIGABRT (134) or any other
code; no traceback and no ``Exception ignored`` on stderr; no ``.part`` temporary left.

A signal that arrives while the interpreter itself is finalizing (after the run ended and said
so) finds Python's default handlers back in place and ends the process by that signal: the
shell shows 128 + signal, ``subprocess`` shows ``-signal``. Both are accepted. A signal during
the interpreter's own start (``site``, before any of our code runs) gets Python's own fatal
error and traceback: nothing a program can change, so trials start from ``MIN_DELAY_S`` and
the benchmark counts such cases apart (``Trial.before_our_code``).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from worker.testing.cli import clean_env

#: What a trial sends: one signal, or SIGINT twice 20-50 ms apart (an impatient user).
KINDS = ("INT", "TERM", "HUP", "INT,INT")
#: Python's own start-up takes this long on a loaded 2-core machine before ``site`` is done.
MIN_DELAY_S = 0.15


@dataclass
class Trial:
    kind: str
    delay_s: float
    code: int | None = None
    stderr: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def aborted(self) -> bool:
        return self.code in (134, -signal.SIGABRT) or "terminate called" in self.stderr

    @property
    def before_our_code(self) -> bool:
        # Python's own initialisation failing, in any of its steps ("Fatal Python error:
        # init_import_site: ...", "... init_sys_streams: ..."): no line of ours has run.
        return "Fatal Python error: init_" in self.stderr


@contextmanager
def busy_cores(n: int = 2) -> Iterator[None]:
    """``n`` processes spinning on the CPU, as on a busy CI machine (the aborts showed only
    under load)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def run_trial(workdir: Path, video: Path, kind: str, delay_s: float, rng: random.Random) -> Trial:
    """Start ``worker run``, wait ``delay_s``, send ``kind``; judge what is left."""
    workdir.mkdir(parents=True, exist_ok=True)
    out, res = workdir / "out.mp4", workdir / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--input", str(video), "--output", str(out),
         "--results", str(res)],
        cwd=workdir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    t = Trial(kind, delay_s)
    deadline = time.monotonic() + delay_s
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    names = kind.split(",")
    for i, name in enumerate(names):
        if proc.poll() is not None:
            break
        if i:
            time.sleep(rng.uniform(0.02, 0.05))
        proc.send_signal(getattr(signal, f"SIG{name}"))
    try:
        _, t.stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, t.stderr = proc.communicate()
        t.problems.append("did not exit within 120 s")
    t.code = proc.returncode
    _judge(t, names, out, res)
    parts = [p.name for p in workdir.iterdir() if p.name.endswith(".part")]
    if parts:
        t.problems.append(f"left {parts}")
    for p in (out, res):
        p.unlink(missing_ok=True)
    return t


def _judge(t: Trial, names: list[str], out: Path, res: Path) -> None:
    """What the exit code and stderr promise (see the module docstring), as ``t.problems``."""
    signums = {getattr(signal, f"SIG{n}") for n in names}
    expected = 128 + getattr(signal, f"SIG{names[0]}")
    complete = out.is_file() and res.is_file() and out.stat().st_size > 0
    if t.code == 0:
        if not complete:
            t.problems.append("exit 0 without both outputs")
    elif t.code is not None and t.code < 0 and -t.code in signums:
        # Ended by the signal itself, while finalizing (see the module docstring).
        if (out.exists() or res.exists()) and not complete:
            t.problems.append("ended by the signal with one output published")
    elif t.code == expected:
        if (out.exists() or res.exists()) and not complete:
            t.problems.append("interrupted with one output published")
        if len([x for x in t.stderr.splitlines() if x.strip()]) != 1:
            t.problems.append("not exactly one line on stderr")
    else:
        t.problems.append(f"exit {t.code}, expected 0 or {expected}")
    for needle in ("Traceback", "Exception ignored", "terminate called"):
        if needle in t.stderr:
            t.problems.append(f"{needle!r} on stderr")
