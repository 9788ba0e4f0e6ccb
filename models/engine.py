"""One ONNX Runtime session, run through IO binding on whichever device it landed on.

The CUDA and CPU paths share every line but the device name handed to ONNX Runtime, so the
tests, which run on CPU, exercise the same binding code a GPU run uses. (No CUDA provider can
be loaded in our CI; that path is checked on paper and by ``session.get_providers()``.)
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from worker.errors import ModelError, ProviderError

__all__ = ["Engine"]

log = logging.getLogger(__name__)

Device = Literal["cuda", "cpu"]
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def _session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    # A pipeline also decodes and encodes on these cores: spinning intra-op threads would
    # steal their CPU while waiting for work, so they sleep instead.
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Fatal only: every failure reaches the caller as an exception, which the CLI prints as
    # its one error line; ONNX Runtime's own ERROR log line would be a second one.
    opts.log_severity_level = 4
    return opts


def _try_cuda(model: bytes, threads: int) -> ort.InferenceSession | None:
    """A CUDA session if the provider really loads here, else None (ORT falls back silently)."""
    if _CUDA not in ort.get_available_providers():
        return None
    # ORT lists CUDA whenever it was compiled in and logs an error when the libraries are
    # missing; we report the outcome ourselves, once, so silence that line.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(
            model,
            sess_options=_session_options(threads),
            providers=[(_CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}), _CPU],
        )
    except Exception as e:
        log.info("CUDA session could not be created: %s", e)
        return None
    finally:
        ort.set_default_logger_severity(2)
    return session if session.get_providers()[0] == _CUDA else None


class Engine:
    """Runs one model: ``run(batch) -> first output`` with inputs bound once per shape."""

    def __init__(
        self, model: bytes, *, provider: str = "auto", threads: int = 0, name: str = "model"
    ) -> None:
        if provider not in ("auto", "cuda", "cpu"):
            raise ProviderError(f"provider '{provider}': expected auto, cuda or cpu")
        session = _try_cuda(model, threads) if provider in ("auto", "cuda") else None
        if session is None and provider == "cuda":
            raise ProviderError(
                "provider 'cuda': the CUDA execution provider did not load on this machine "
                "(it needs an NVIDIA GPU with CUDA 13 and cuDNN 9); use --provider cpu or auto"
            )
        if session is None:
            try:
                session = ort.InferenceSession(
                    model, sess_options=_session_options(threads), providers=[_CPU]
                )
            except Exception as e:
                raise ModelError(f"model '{name}': ONNX Runtime cannot load it ({e})") from e
        self.session = session
        self.device: Device = "cuda" if session.get_providers()[0] == _CUDA else "cpu"
        self.provider = "cuda" if self.device == "cuda" else "cpu"
        self.input_name: str = session.get_inputs()[0].name
        self.output_name: str = session.get_outputs()[0].name
        self._binding = session.io_binding()
        # Device buffers allocated once per input shape and refilled in place: a file run sees
        # at most two shapes (full batches and the last partial one).
        self._inputs: dict[tuple[int, ...], Any] = {}

    def run(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Run one batch; returns the first output as a host array."""
        value = self._inputs.get(batch.shape)
        if value is None:
            value = ort.OrtValue.ortvalue_from_shape_and_type(
                list(batch.shape), batch.dtype, self.device, 0
            )
            self._inputs[batch.shape] = value
        value.update_inplace(np.ascontiguousarray(batch))
        self._binding.bind_ortvalue_input(self.input_name, value)
        self._binding.bind_output(self.output_name, self.device)
        self.session.run_with_iobinding(self._binding)
        out: np.ndarray[Any, Any] = self._binding.copy_outputs_to_cpu()[0]
        return out
