"""Smaller, faster models from a verified float32 export, with ONNX Runtime's own tools.

- ``to_half``: float16 weights and activations (``onnxruntime.transformers.float16``), the
  graph's inputs and outputs kept float32 so the worker's fused graph wraps it as before.
  Worth it on a GPU; on a CPU most kernels have no float16 version and ONNX Runtime casts
  back and forth (slower, not faster).
- ``to_int8``: static quantization in the QDQ format (``onnxruntime.quantization``, after its
  ``quant_pre_process``), weights per channel and uint8 activations (int8 activations ran at
  half the speed), their ranges calibrated on the sample images preprocessed exactly as the
  worker will. The weights are int8 where the CPU has VNNI and uint8 elsewhere
  (``worker.models.cpu``: int8 weights saturate without VNNI). Whether it is faster depends
  on the model and the CPU: ``benchmarks/precision_bench.py`` measures it.

Either result is then verified against PyTorch's float32 answers like the float32 export,
but judged by agreement (the worker's top-1 labels or mask pixels): a reduced precision is
not expected to match float32 outputs to a relative 1e-3, only to answer the same.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from worker.errors import ExportError
from worker.models.cpu import Int8Weights

__all__ = ["to_half", "to_int8"]

Array = np.ndarray[Any, Any]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's tools print and log as they go; the export's report says what matters."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def to_half(proto: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    try:
        with _quiet():
            out = convert_float_to_float16(proto, keep_io_types=True)
            # The converter appends the input casts after the nodes that read them.
            sorted_model = OnnxModel(out)
            sorted_model.topological_sort()
            out = sorted_model.model
    except Exception as e:
        raise ExportError(f"--half: float16 conversion failed: {type(e).__name__}: {e}") from e
    if not isinstance(out, onnx.ModelProto):
        raise ExportError(f"--half: float16 conversion returned {type(out).__name__}")
    return out


class _Samples:
    """ONNX Runtime's ``CalibrationDataReader``: one preprocessed image per call."""

    def __init__(self, name: str, batches: Sequence[Array]) -> None:
        self.name = name
        self.batches = list(batches)
        self.i = 0

    def get_next(self) -> dict[str, Array] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def to_int8(
    proto: onnx.ModelProto,
    input_name: str,
    batches: Sequence[Array],
    weights: Int8Weights = "int8",
) -> onnx.ModelProto:
    """Static QDQ quantization calibrated on ``batches`` (model inputs, preprocessed), with
    ``weights`` of that type (``int8_weights`` says which suits this CPU)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationDataReader
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not batches:
        raise ExportError("--quantize int8: needs --samples (the images calibrate the ranges)")

    class Reader(_Samples, CalibrationDataReader):  # type: ignore[misc]
        pass

    with tempfile.TemporaryDirectory(prefix="worker-int8-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(proto.SerializeToString())
        try:
            with _quiet():
                try:
                    quant_pre_process(str(src), str(pre))
                except Exception:  # optional: a graph it cannot infer is quantized as it is
                    pre = src
                quantize_static(
                    pre,
                    dst,
                    Reader(input_name, batches),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8 if weights == "int8" else QuantType.QUInt8,
                )
        except Exception as e:
            raise ExportError(
                f"--quantize int8: quantization failed: {type(e).__name__}: {e}"
            ) from e
        return onnx.load(str(dst))
