"""One error root for the whole worker.

Like ``av.error``, each subclass also inherits the builtin it corresponds to, so callers can
catch ``FileNotFoundError`` or ``ValueError`` without knowing our names. Messages name the file,
field or stage that failed and what was expected; the CLI prints them as one ``error:`` line.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "CardError",
    "DependencyError",
    "ExportError",
    "FuseError",
    "InputError",
    "InputNotFoundError",
    "JobError",
    "JobNotFoundError",
    "LeaseLost",
    "ModelError",
    "OutputError",
    "ProviderError",
    "QueueError",
    "SettingsError",
    "ShapeMismatch",
    "Signalled",
    "StageError",
    "StaleHeartbeat",
    "VerificationError",
    "WorkerError",
]


class WorkerError(Exception):
    """Root of every error the worker raises on purpose."""

    #: Process exit code the CLI uses for this error: 2 for usage and input errors.
    exit_code = 2


class SettingsError(WorkerError, ValueError):
    """A setting (CLI flag, environment variable or .env entry) has a wrong value."""


class InputError(WorkerError, ValueError):
    """The input video cannot be used: not a video, no video stream, unsupported format."""


class InputNotFoundError(InputError, FileNotFoundError):
    """The input file does not exist or cannot be read."""


class ModelError(WorkerError, ValueError):
    """The model is not ONNX, fails the checker, or has inputs/outputs we cannot map."""


class CardError(ModelError):
    """The model card has unknown fields, wrong types or values that contradict the graph."""


class FuseError(ModelError):
    """The model cannot be wrapped in the fused uint8 graph (an old opset, weights in
    external files, ONNX Runtime refusing the result): it runs unfused, with a warning."""


class ProviderError(WorkerError, RuntimeError):
    """The requested execution provider is not usable on this machine."""


class OutputError(WorkerError, OSError):
    """An output path cannot be written."""


class StageError(WorkerError, RuntimeError):
    """A pipeline stage failed while running; ``stage`` names it, ``__cause__`` says why."""

    exit_code = 1

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"stage '{stage}' failed: {message}")
        self.stage = stage


class Cancelled(WorkerError):
    """The run was stopped by the user (Ctrl-C, a signal) or by a cancel request; nothing was
    published. ``signum``: the signal that stopped it, if one did (exit code 128 + signum)."""

    exit_code = 130

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum
        if signum is not None:
            self.exit_code = 128 + signum


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived where Python would raise ``KeyboardInterrupt`` for SIGINT:
    handled the same way (stop, remove temporaries), exit code 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# Export (worker export: worker/export/).
class DependencyError(WorkerError, ImportError):
    """An optional dependency a command needs is not installed; the message names the extra."""


class ExportError(WorkerError, ValueError):
    """A PyTorch model cannot be exported: factory, weights, mode, operator or opset."""


class VerificationError(ExportError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


class ShapeMismatch(ExportError):
    """The exported model's output and PyTorch's differ in shape: not a rounding matter."""


# The job queue (worker/queue/).
class JobError(WorkerError, ValueError):
    """A job is malformed or names a path outside the configured roots or a refused URL scheme."""


class JobNotFoundError(JobError, LookupError):
    """No job has this id."""


class QueueError(WorkerError, ConnectionError):
    """Redis cannot be reached or refused us; the message never carries the password."""

    exit_code = 1


class StaleHeartbeat(WorkerError):
    """``worker check``: no live worker here. Exit 1, as liveness probes expect."""

    exit_code = 1


class LeaseLost(WorkerError, RuntimeError):
    """Another worker holds this job now: ours must publish nothing and report nothing."""

    exit_code = 1
