"""The worker: CLI, settings and errors; the job queue and the live monitor's command.

Kept free of heavy imports so ``pipelines`` and ``models`` can use its errors without cycles;
the CLI lives in ``worker.cli``.
"""

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
    StageError,
    VerificationError,
    WorkerError,
)
from worker.settings import Settings, load_settings

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
    "ModelError",
    "OutputError",
    "ProviderError",
    "QueueError",
    "Settings",
    "SettingsError",
    "StageError",
    "VerificationError",
    "WorkerError",
    "__version__",
    "load_settings",
]
