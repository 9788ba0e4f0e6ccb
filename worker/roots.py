"""Paths a queued job names, kept inside the folders they belong to (the input, output and
model roots): whoever can write to Redis can ask for work, but cannot name files elsewhere.

``..`` and symlinks are followed first and checked after, so neither can lead out.
"""

from __future__ import annotations

from pathlib import Path

from worker.errors import JobError

__all__ = ["MAX_PATH", "relative_inside", "resolve_inside"]

MAX_PATH = 4096


def resolve_inside(value: str, root: Path, what: str) -> Path:
    """``value`` (relative to ``root``, or absolute) resolved with symlinks; it must stay
    inside ``root`` (``JobError`` naming ``what`` if it does not)."""
    if not value or "\x00" in value or len(value) > MAX_PATH:
        raise JobError(f"{what} '{value[:80]}': expected a file path")
    base = root.resolve()
    path = Path(value)
    real = (path if path.is_absolute() else base / path).resolve()
    if real != base and base not in real.parents:
        raise JobError(
            f"{what} '{value}': outside the {what} root '{root}'; expected a path inside it"
        )
    if real == base:
        raise JobError(f"{what} '{value}': is the {what} root itself; expected a file inside it")
    return real


def relative_inside(value: str, root: Path, what: str) -> str:
    """The path as stored in a job: relative to its root, after the checks above."""
    return resolve_inside(value, root, what).relative_to(root.resolve()).as_posix()
