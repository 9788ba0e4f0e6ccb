"""Running the ``worker`` command as a user does, in a fresh process, and checking how it
failed: the one way tests and benchmarks do it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.testing.waiting import DEADLINE_S

__all__ = ["clean_env", "one_error", "worker_cli", "worker_popen"]


def clean_env(extra: Mapping[str, str] | None = None, /, **settings: Any) -> dict[str, str]:
    """This process's environment without any ``WORKER_*`` variable (a developer's own settings
    must not leak in), plus ``extra`` and ``settings`` as ``WORKER_<NAME>`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(extra or {})
    env.update({f"WORKER_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def worker_cli(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = DEADLINE_S
) -> subprocess.CompletedProcess[str]:
    """``python -m worker *args`` in ``cwd``, to the end; ``env``: the whole environment
    (default: ``clean_env()``)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=cwd, env=dict(env) if env is not None else clean_env(), capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip


def worker_popen(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``python -m worker *args`` started in ``cwd``, its output piped (to signal it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker", *args],
        cwd=cwd, env=dict(env) if env is not None else clean_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def one_error(
    proc: subprocess.CompletedProcess[str], *needles: str, code: int = 2, quiet: bool = True
) -> str:
    """The promise for a refused command: exit ``code``, no traceback, exactly one
    ``error: ...`` line on stderr naming every needle (and, if ``quiet``, nothing on stdout).
    Returns that line."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if quiet:
        assert proc.stdout == "", proc.stdout
    return lines[0]
