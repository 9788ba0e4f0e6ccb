"""Shared fixtures. Test inputs are built by ``factory`` (PyAV videos, onnx.helper models)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # Settings read WORKER_* and ./.env: a developer's own settings must not leak into tests.
    for key in list(os.environ):
        if key.startswith("WORKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield
