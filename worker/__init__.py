"""video-worker: ONNX segmentation and classification models on video files, queued jobs
and live cameras. ``worker`` is the distribution's one import name.

Subpackages, from the bottom up (imports only point down; a test checks):

- ``worker.errors`` (the error root), ``worker.constants`` (Redis keys),
  ``worker.description`` (how a video is processed, in sections), ``worker.settings``
  (every option, with pipeline files as one of its sources);
- ``worker.ops``: pure numpy pre/post-processing, mask maths and drawing;
- ``worker.models``: ONNX graphs, cards, the ONNX Runtime engine, the model repository;
- ``worker.stages``: decode, infer, the frame loop (record, paint, write), and ``run_file``;
- ``worker.live`` (cameras: ``Monitor``), ``worker.queue`` (the Redis job queue),
  ``worker.export`` (PyTorch -> ONNX);
- ``worker.cli``: the ``worker`` command.

This module stays light (the errors); everything else loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker import errors as _errors
from worker.errors import *  # noqa: F403  (the error root and every error, as ``worker.X``)

if TYPE_CHECKING:
    from worker.description import RunDescription
    from worker.live import Monitor
    from worker.models import Model, load_model
    from worker.settings import Settings, load_settings
    from worker.stages import run_file

__version__ = "0.1.0"

__all__ = [
    *_errors.__all__,
    "Model",
    "Monitor",
    "RunDescription",
    "Settings",
    "__version__",
    "load_model",
    "load_settings",
    "run_file",
]

#: Imported when first asked for: the settings (pydantic) and the heavy entry points (ONNX
#: Runtime, PyAV, OpenCV). ``import worker`` itself costs next to nothing.
_LAZY = {
    "RunDescription": "worker.description",
    "Settings": "worker.settings",
    "load_settings": "worker.settings",
    "Model": "worker.models",
    "load_model": "worker.models",
    "run_file": "worker.stages",
    "Monitor": "worker.live",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'worker' has no attribute '{name}'")
