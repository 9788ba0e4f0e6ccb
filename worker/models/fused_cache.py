"""Fused graphs kept on disk, so a second start skips building one.

Building the fused graph (``worker.models.fuse``: compose, check, serialise) takes ~0.1 s for
a 13 MB model, every start, for the same bytes. Like TensorRT's engine cache, the result is
kept in a folder (``cache_dir``) under a key of everything it depends on: the model file's
SHA-256, the fuse spec (card, run options, probed output), and the versions of onnx, ONNX
Runtime and ``fuse.py`` itself, so that any change builds anew. Entries are written under a
temporary name and renamed; a damaged or unreadable entry is rebuilt, never trusted; the
folder keeps the newest ``MAX_ENTRIES``. Models whose weights are in external files are not
cached (their bytes are not in one file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["MAX_ENTRIES", "default_cache_dir", "entry_key", "file_sha256", "load", "store"]

log = logging.getLogger(__name__)

MAX_ENTRIES = 64
_FUSE_SOURCES = [Path(__file__).with_name(n) for n in ("fuse.py", "fuse_boxes.py")]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/video-worker``, else ``~/.cache/video-worker``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "video-worker"


def file_sha256(path: Path) -> str:
    """A file's SHA-256, hex."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def entry_key(model_path: Path, spec: Any) -> str | None:
    """The cache key of the fused graph of ``model_path`` per ``spec``; None if uncacheable."""
    import onnx
    import onnxruntime

    try:
        parts = [
            file_sha256(model_path),
            repr(spec),
            onnx.__version__,
            onnxruntime.__version__,
            *(file_sha256(f) for f in _FUSE_SOURCES),
        ]
    except OSError:
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


def load(folder: Path, key: str) -> tuple[bytes, dict[str, Any]] | None:
    """The cached graph and its names, or None (missing, damaged, unreadable)."""
    meta_path, data_path = folder / f"{key}.json", folder / f"{key}.onnx"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        data = data_path.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        return None
    with contextlib.suppress(OSError):
        os.utime(meta_path)  # recently used: pruned last
    return data, meta


def store(folder: Path, key: str, data: bytes, names: dict[str, Any]) -> None:
    """Keep ``data`` under ``key``; a cache that cannot be written is only a slower start."""
    meta = {**names, "sha256": hashlib.sha256(data).hexdigest()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for suffix, payload in ((".onnx", data), (".json", json.dumps(meta).encode())):
            final = folder / f"{key}{suffix}"
            tmp = folder / f".{key}{suffix}.{os.getpid()}.part"
            tmp.write_bytes(payload)
            os.replace(tmp, final)  # the .json last: its presence says the entry is whole
        _prune(folder)
    except OSError as e:
        log.debug("fused graph cache %s not written: %s", folder, e)


def _prune(folder: Path) -> None:
    metas = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in metas[MAX_ENTRIES:]:
        for p in (old, old.with_suffix(".onnx")):
            with contextlib.suppress(OSError):
                p.unlink()
