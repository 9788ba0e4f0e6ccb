"""Shared fixtures. Test inputs are built by ``factory`` (PyAV videos, onnx.helper models)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.testing import RedisServer, Rig, worker_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` first: run in parallel (``-n auto``), the suite ends when its
    longest test does, so the long ones must not start last."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(autouse=True)
def _clean_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    # Settings read WORKER_* and ./.env: a developer's own settings must not leak into tests.
    for key in list(os.environ):
        if key.startswith("WORKER_"):
            monkeypatch.delenv(key)
    # The fused-graph cache of each test is its own (and never the developer's ~/.cache).
    # (Beside the test's folder, not in it: tests look at what a run leaves there.)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    monkeypatch.chdir(tmp_path)
    yield


# ----------------------------------------------------------------------------- the queue's rig


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worker.testing import LONG, make_video

    return make_video(tmp_path_factory.mktemp("videos") / "long.mp4", **LONG)  # type: ignore[arg-type]


@pytest.fixture
def rig(tmp_path: Path, long_video: Path) -> Iterator[Rig]:
    """A queue of the test's own: folders, a redis-server (AOF on), ``worker`` processes."""
    from worker.testing import make_video

    for d in ("in", "out", "models"):
        (tmp_path / d).mkdir()
    os.link(long_video, tmp_path / "in" / "long.mp4")
    make_video(tmp_path / "in" / "a.mp4", frames=12)
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    r = Rig(tmp_path, server, worker_env(tmp_path, server.url))
    yield r
    for p in r.procs:
        p.close()
    server.kill()
