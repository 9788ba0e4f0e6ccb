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
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from worker.errors import OutputError
from worker.signals import held

__all__ = ["AtomicDir", "AtomicFile"]

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class AtomicFile:
    """Where one output is written (``temp``) and how it is published (``commit``)."""

    def __init__(self, final: Path, what: str = "output", *, into: list[Any] | None = None) -> None:
        """``into``: the caller's list of what to discard if it fails, which the file joins
        in the same step as its temporary is made (``worker.signals.held``): a signal in
        between would unwind past a temporary nobody knows of."""
        with held():
            self._open(final, what)
            if into is not None:
                into.append(self)

    def _open(self, final: Path, what: str) -> None:
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


class AtomicDir:
    """A folder of outputs (mask pictures, snapshots) that appears whole or not at all: files
    go into a temporary ``.<name>.<random>.part`` folder beside it, renamed into place by
    ``commit()``. An existing folder is replaced only if everything in it is ours (names
    matching ``ours``, as an earlier run of the same command left it); anything else there
    is refused when the folder is opened."""

    def __init__(
        self, final: Path, what: str = "output", ours: str = r".*", *, into: list[Any] | None = None
    ) -> None:
        """``into``: as ``AtomicFile``'s."""
        with held():
            self._open(final, what, ours)
            if into is not None:
                into.append(self)

    def _open(self, final: Path, what: str, ours: str) -> None:
        self.final = final
        self.what = what
        if final.exists():
            mine = re.compile(ours)
            foreign = (
                next((p.name for p in final.iterdir() if not mine.fullmatch(p.name)), None)
                if final.is_dir() and not final.is_symlink()
                else final.name
            )
            if foreign is not None:
                raise OutputError(
                    f"{what} '{final}': holds '{foreign}', which this run did not write; "
                    "expected a new folder or one an earlier run filled (remove it or choose "
                    "another)"
                )
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self.temp = Path(
                tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
            )
        except OSError as e:
            raise OutputError(f"{what} '{final}': cannot write ({e.strerror or e})") from e
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.temp, 0o777 & ~umask)
        self.used = False  # nothing written: commit leaves no empty folder behind

    def commit(self) -> Path | None:
        if not self.used:
            self.discard()
            return None
        old = None
        if self.final.exists():
            # Out of the way first, then the new one in, then the old one gone: a reader sees
            # the old folder or the new one, never a mix (and never nothing for long).
            old = Path(tempfile.mkdtemp(dir=self.final.parent, prefix=f".{self.final.name}.old."))
            os.replace(self.final, old / self.final.name)
        os.replace(self.temp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)
