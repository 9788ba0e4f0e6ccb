"""Outputs appear under their final name only when complete: write a temporary, then rename.

Three cases, decided when the output is opened:

- a regular file, or a name that does not exist yet: a temporary ``.<name>.<random>.part``
  beside it, renamed over it by ``commit()`` (atomic: readers see the old file or the whole
  new one). A symlink to a regular file is followed: the file it points to is replaced, the
  link stays;
- a FIFO or a character device (``/dev/null``, a terminal, ``/dev/stdout`` through its
  symlink): written straight through (``direct``), since renaming over it would replace the
  device node with a regular file. Atomicity does not apply there: a reader of a FIFO sees
  the data as it is written, and a failed run leaves what was written so far;
- ``-``: standard output (``stdout``), written straight through as well;
- anything else that exists (a folder, a block device, a socket) is refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from worker.errors import OutputError

__all__ = ["AtomicFile"]

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class AtomicFile:
    """Where one output is written (``temp``) and how it is published (``commit``)."""

    def __init__(self, final: Path, what: str = "output") -> None:
        self.final = final
        self.what = what
        self.direct = False  # written in place: a FIFO, a character device or stdout
        self.stdout = str(final) == "-"
        if self.stdout:
            self.direct = True
            self.temp = final
            return
        try:
            st = os.stat(final)  # follows symlinks: /dev/stdout -> /proc/self/fd/1 -> a pipe
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise OutputError(f"{what} '{final}': cannot write ({e.strerror or e})") from e
        if st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            self.direct = True
            self.temp = final
            return
        if st is not None and not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise OutputError(
                f"{what} '{final}': is {kind}; expected a file (or a FIFO or character device, "
                "written straight through)"
            )
        # A symlink to a regular file: replace the file it names, never the link itself.
        target = final.resolve() if st is not None and final.is_symlink() else final
        self.target = target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.", suffix=".part"
            )
        except OSError as e:
            raise OutputError(f"{what} '{final}': cannot write ({e.strerror or e})") from e
        os.close(fd)
        # mkstemp makes the file private (0600); outputs get the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
        self.temp = Path(name)

    def commit(self) -> Path:
        if not self.direct:
            os.replace(self.temp, self.target)
        return self.final

    def discard(self) -> None:
        if not self.direct:
            with contextlib.suppress(FileNotFoundError):
                self.temp.unlink()
