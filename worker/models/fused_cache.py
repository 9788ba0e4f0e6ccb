"""Fused graphs kept on disk, so a second start skips building one.

Building the fused graph (``worker.models.fuse``: compose, check, serialise) takes ~0.1 s for
a 13 MB model, every start, for the same bytes. Like TensorRT's engine cache, the result is
kept in a folder (``cache_dir``) under a key of everything it depends on: the model file's
SHA-256, the fuse spec (card, run options, probed output), and the versions of onnx, ONNX
Runtime and ``fuse.py`` itself, so that any change builds anew. Entries are written under a
temporary name and renamed; an entry whose file changed since it was written is checked
against its checksum, and a damaged or unreadable one is rebuilt; the folder keeps the newest
``MAX_ENTRIES``. Models whose weights are in external files are not cached (their bytes are
not in one file). A model's SHA-256 is remembered under the file's identity (device, inode,
size, modification and change times), so a start reads an unchanged model only to load it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.description import Speed

__all__ = [
    "MAX_ENTRIES",
    "cache_dir_for",
    "default_cache_dir",
    "entry_key",
    "file_sha256",
    "load",
    "load_facts",
    "model_sha256",
    "store",
    "store_facts",
]

log = logging.getLogger(__name__)

MAX_ENTRIES = 64
_FUSE_SOURCES = [Path(__file__).with_name(n) for n in ("fuse.py", "fuse_boxes.py", "fuse_spec.py")]


def cache_dir_for(speed: Speed) -> Path | None:
    """Where a run's speed settings keep fused graphs and model facts; None: not kept."""
    if not speed.fuse_cache:
        return None
    return speed.cache_dir or default_cache_dir()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/video-worker``, else ``~/.cache/video-worker``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "video-worker"


def file_sha256(path: Path) -> str:
    """A file's SHA-256, hex."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _identity(st: os.stat_result) -> list[int]:
    """What changes whenever a file's bytes do: any write moves its change time, which no
    tool can set back (unlike the modification time)."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def model_sha256(path: Path, folder: Path) -> str:
    """``file_sha256(path)``, remembered in ``folder`` under the file's identity, so a start
    whose model did not change reads none of it for its key (a 110 MB model: ~65 ms of
    hashing here, every start). OSError if the model cannot be read."""
    ident = _identity(path.stat())
    memo = folder / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:40] + ".stat")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        seen = json.loads(memo.read_text(encoding="utf-8"))
        if seen["id"] == ident and isinstance(seen["sha256"], str):
            return seen["sha256"]
    sha = file_sha256(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write(memo, json.dumps({"id": ident, "sha256": sha}).encode())
        _prune(folder, "*.stat")
    except OSError as e:
        log.debug("model checksum %s not kept: %s", memo, e)
    return sha


def entry_key(model_path: Path, spec: Any, model_sha: str | None = None) -> str | None:
    """The cache key of the fused graph of ``model_path`` per ``spec``; None if uncacheable.
    ``model_sha``: the file's SHA-256 if already known (reading a large model again for it is
    a second full read per start)."""
    import onnxruntime

    try:
        parts = [
            model_sha or file_sha256(model_path),
            repr(spec),
            version("onnx"),  # (not imported: a cache hit never loads onnx, ~0.8 s here)
            onnxruntime.__version__,
            *(file_sha256(f) for f in _FUSE_SOURCES),
        ]
    except OSError:
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


def load(folder: Path, key: str) -> tuple[str, dict[str, Any]] | None:
    """The cached graph's path (checked against its checksum) and its names, or None
    (missing, damaged, unreadable). A path, not the bytes: ONNX Runtime reads the file
    itself, so the graph's weights are not held once more in this process while it loads."""
    meta_path, data_path = folder / f"{key}.json", folder / f"{key}.onnx"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        # The graph as it was written (its identity then) is not read for its checksum; a
        # graph changed since, or copied from elsewhere, is.
        same = isinstance(meta, dict) and meta.get("id") == _identity(data_path.stat())
        digest = meta.get("sha256") if same else file_sha256(data_path)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or digest != meta.get("sha256"):
        return None
    with contextlib.suppress(OSError):
        os.utime(meta_path)  # recently used: pruned last
    return str(data_path), meta


def store(folder: Path, key: str, data: bytes, names: dict[str, Any]) -> None:
    """Keep ``data`` under ``key``; a cache that cannot be written is only a slower start."""
    meta = {**names, "sha256": hashlib.sha256(data).hexdigest()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"{key}.onnx", data)
        meta["id"] = _identity((folder / f"{key}.onnx").stat())
        _write(folder / f"{key}.json", json.dumps(meta).encode())  # last: the entry is whole
        _prune(folder, "*.json", ".onnx")
    except OSError as e:
        log.debug("fused graph cache %s not written: %s", folder, e)


# What ``worker.models.graph`` read from a model (and the shapes its probe saw), as JSON under
# the file's SHA-256 and what reads it: a model's facts change only with its bytes.
_FACTS_SOURCE = Path(__file__).with_name("graph.py")


def _facts_path(folder: Path, model_sha: str) -> Path | None:
    import onnxruntime

    try:
        parts = [model_sha, file_sha256(_FACTS_SOURCE), onnxruntime.__version__]
    except OSError:
        return None
    return folder / (hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40] + ".facts")


def load_facts(folder: Path, model_sha: str) -> dict[str, Any] | None:
    """A model's facts, or None (missing, damaged, unreadable)."""
    path = _facts_path(folder, model_sha)
    if path is None:
        return None
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) else None


def store_facts(folder: Path, model_sha: str, facts: dict[str, Any]) -> None:
    """Keep a model's facts; a cache that cannot be written is only a slower start."""
    path = _facts_path(folder, model_sha)
    if path is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write(path, json.dumps(facts).encode())
        _prune(folder, "*.facts")
    except (OSError, TypeError, ValueError) as e:
        log.debug("model facts %s not written: %s", path, e)


def _write(final: Path, payload: bytes) -> None:
    """``payload`` under a temporary name, then renamed: a reader sees all of it or none."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.part")
    tmp.write_bytes(payload)
    os.replace(tmp, final)


def _prune(folder: Path, pattern: str, companion: str | None = None) -> None:
    """Keep the newest ``MAX_ENTRIES`` files matching ``pattern`` (and each one's file of the
    same stem with the ``companion`` suffix); remove the rest, and the temporaries of
    writers that are gone."""
    newest = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in newest[MAX_ENTRIES:]:
        for p in (old, *((old.with_suffix(companion),) if companion else ())):
            with contextlib.suppress(OSError):
                p.unlink()
    for tmp in folder.glob(".*.part"):
        # ``_write``'s temporary of a process stopped mid-write (a Ctrl-C during a cold
        # start): nothing renames it any more.
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's: alive
    return True
