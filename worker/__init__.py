"""video-worker: ONNX segmentation and classification models on video files, queued jobs
and live cameras. ``worker`` is the distribution's one import name.

Subpackages, from the bottom up (imports only point down; a test checks):

- ``worker.errors`` (the error root), ``worker.constants`` (Redis keys), ``worker.settings``
  (every option, with pipeline files as one of its sources);
- ``worker.models``: ONNX graphs, cards, the ONNX Runtime engine, the model repository;
- ``worker.ops``: pure numpy pre/post-processing, mask maths and drawing;
- ``worker.stages``: decode, infer, annotate/encode, and ``run_file`` wiring them;
- ``worker.live`` (cameras: ``Monitor``), ``worker.queue`` (the Redis job queue),
  ``worker.export`` (PyTorch -> ONNX);
- ``worker.cli``: the ``worker`` command.

This module stays light (the errors); everything else loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.errors import (
    Cancelled,
    CardError,
    DependencyError,
    ExportError,
    InputError,
    InputNotFoundError,
    JobError,
    JobNotFoundError,
    LeaseLost,
    ModelError,
    OutputError,
    ProviderError,
    QueueError,
    SettingsError,
    Signalled,
    StageError,
    VerificationError,
    WorkerError,
)

if TYPE_CHECKING:
    from worker.live import Monitor
    from worker.models import Model, load_model
    from worker.settings import Settings, load_settings
    from worker.stages import run_file

__version__ = "0.1.0"

__all__ = [
    "Cancelled",
    "CardError",
    "DependencyError",
    "ExportError",
    "InputError",
    "InputNotFoundError",
    "JobError",
    "JobNotFoundError",
    "LeaseLost",
    "Model",
    "ModelError",
    "Monitor",
    "OutputError",
    "ProviderError",
    "QueueError",
    "Settings",
    "SettingsError",
    "Signalled",
    "StageError",
    "VerificationError",
    "WorkerError",
    "__version__",
    "load_model",
    "load_settings",
    "run_file",
]

#: Imported when first asked for: the settings (pydantic) and the heavy entry points (ONNX
#: Runtime, PyAV, OpenCV). ``import worker`` itself costs next to nothing.
_LAZY = {
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
