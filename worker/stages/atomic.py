"""Outputs appear under their final name only when complete: write a temporary, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from worker.errors import OutputError

__all__ = ["AtomicFile"]


class AtomicFile:
    """A temporary file beside ``final``; ``commit()`` renames it into place atomically."""

    def __init__(self, final: Path, what: str = "output") -> None:
        self.final = final
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_dir():
                raise IsADirectoryError(21, "is a directory")
            fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
        except OSError as e:
            raise OutputError(f"{what} '{final}': cannot write ({e.strerror or e})") from e
        os.close(fd)
        # mkstemp makes the file private (0600); outputs get the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
        self.temp = Path(name)

    def commit(self) -> Path:
        os.replace(self.temp, self.final)
        return self.final

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()
