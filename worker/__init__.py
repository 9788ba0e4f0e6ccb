"""The worker: CLI, settings and errors (and, later, the job queue).

Kept free of heavy imports so ``pipelines`` and ``models`` can use its errors without cycles;
the CLI lives in ``worker.cli``.
"""

from worker.errors import (
    Cancelled,
    CardError,
    InputError,
    InputNotFoundError,
    ModelError,
    OutputError,
    ProviderError,
    SettingsError,
    StageError,
    WorkerError,
)
from worker.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "Cancelled",
    "CardError",
    "InputError",
    "InputNotFoundError",
    "ModelError",
    "OutputError",
    "ProviderError",
    "Settings",
    "SettingsError",
    "StageError",
    "WorkerError",
    "__version__",
    "load_settings",
]
