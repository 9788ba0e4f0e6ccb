"""Calling torch's ONNX exporter: its output kept off our streams, its errors made ours.

The TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) writes the requested opset
natively, takes ``dynamic_axes`` as they are, and says which operator an opset lacks and which
opset has it. The newer dynamo exporter (torch's default since 2.9) implements opset 18 and up
and converts down afterwards; in torch 2.13 that conversion fails on a plain ReduceMean
classifier and leaves the model at opset 18.

torch is imported inside the functions: ``models`` must import without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from worker.errors import ExportError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["export_onnx", "first_line", "opset_range", "simplify", "warning_lines"]

# Warnings the exporter emits about itself, not about the model: we chose the TorchScript
# exporter on purpose (see above), and it calls one of its own deprecated helpers.
_EXPORTER_NOISE = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed. Please remove usage of this function",
)
_UNSUPPORTED = (
    # UnsupportedOperatorError, with or without the opset that has the operator.
    re.compile(
        r"Exporting the operator '(?P<op>[^']+)' to ONNX opset version (?P<opset>\d+) is not "
        r"supported(?:\. Support for this operator was added in version (?P<need>\d+))?"
    ),
    # symbolic_helper._onnx_opset_unsupported(_detailed)
    re.compile(
        r"Unsupported: ONNX export of (?:operator )?(?P<op>.+?) in opset (?P<opset>\d+)\..*?"
        r"Please try opset version (?P<need>\d+)"
    ),
    # symbolic_helper._onnx_unsupported, _block_list_in_opset
    re.compile(r"Unsupported: ONNX export of operator (?P<op>[^\s.]+)"),
    re.compile(r"ONNX export failed on (?P<op>[^\s,]+), which is not implemented for opset"),
)


def opset_range() -> tuple[int, int]:
    """The opsets the installed torch's TorchScript exporter writes."""
    from torch.onnx import _constants  # private, but the only place these limits live

    return 9, int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def first_line(e: BaseException, limit: int = 400) -> str:
    text = str(e).strip()
    line = text.splitlines()[0].strip() if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextlib.contextmanager
def _native_output_captured() -> Iterator[None]:
    """Send file descriptors 1 and 2 to a scratch file for the duration.

    torch 2.13's TorchScript exporter turns its C++ log on for every export (it tests the
    function ``_jit_is_onnx_log_enabled`` instead of calling it) and, when an operator cannot
    be exported, dumps the whole TorchScript graph on stdout: our stdout is the JSON report
    and stderr the one error line, so neither may get it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                # C++ streams write through C stdio, which buffers when fd 1 is not a terminal.
                with contextlib.suppress(OSError, AttributeError):  # no libc handle (Windows)
                    ctypes.CDLL(None).fflush(None)
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _unsupported(e: BaseException, opset: int) -> ExportError | None:
    """An ExportError naming the operator and the opset to use, if ``e`` is about one."""
    text = str(e)
    for pattern in _UNSUPPORTED:
        m = pattern.search(text)
        if m is None:
            continue
        op = m.group("op")
        need = m.groupdict().get("need")
        if need is not None and int(need) > opset:
            return ExportError(
                f"operator '{op}' cannot be exported at opset {opset}: ONNX has it from opset "
                f"{need}; use --opset {need} (or higher)"
            )
        return ExportError(
            f"operator '{op}' cannot be exported to ONNX at opset {opset}: torch's exporter "
            "has no translation for it at this opset; replace it in the model, try another "
            "--opset, or register one with torch.onnx.register_custom_op_symbolic"
        )
    return None


def export_onnx(
    net: nn.Module,
    dummy: torch.Tensor,
    *,
    opset: int,
    input_name: str,
    output_name: str,
    axes: dict[str, dict[int, str]],
) -> onnx.ModelProto:
    """Trace ``net`` on ``dummy`` and export it; raises ExportError naming what failed."""
    import torch

    with tempfile.TemporaryDirectory(prefix="worker-export-") as scratch:
        path = Path(scratch) / "model.onnx"
        try:
            with _native_output_captured():
                torch.onnx.export(
                    net,
                    (dummy,),
                    path,
                    input_names=[input_name],
                    output_names=[output_name],
                    opset_version=opset,
                    dynamic_axes=axes,
                    dynamo=False,
                )
        except Exception as e:
            raise _unsupported(e, opset) or ExportError(
                f"torch.onnx.export failed: {type(e).__name__}: {first_line(e)}"
            ) from e
        return onnx.load(str(path))


def simplify(
    proto: onnx.ModelProto,
) -> tuple[onnx.ModelProto, str | None, list[str], dict[str, Any] | None]:
    """(model, the simplifier used or None, warnings, what it removed): onnxslim (the
    ``export`` extra), else onnxsim, if installed."""
    for name in ("onnxslim", "onnxsim"):
        try:
            lib = importlib.import_module(name)
        except ImportError:
            continue
        try:
            if name == "onnxslim":
                out = lib.slim(proto)
            else:
                out, ok = lib.simplify(proto)
                if not ok:
                    raise RuntimeError("its own check of the result failed")
        except Exception as e:
            return (
                proto,
                None,
                [f"{name} failed ({first_line(e)}); kept the graph as exported"],
                None,
            )
        if isinstance(out, onnx.ModelProto):
            return out, name, [], removed_nodes(proto, out)
        note = f"{name} returned {type(out).__name__}; kept the graph as exported"
        return proto, None, [note], None
    return proto, None, [], None


def removed_nodes(before: onnx.ModelProto, after: onnx.ModelProto) -> dict[str, Any]:
    """Node counts before and after, and per operator how many fewer (top-level graph)."""
    a = Counter(n.op_type for n in before.graph.node)
    b = Counter(n.op_type for n in after.graph.node)
    fewer = {op: a[op] - b.get(op, 0) for op in sorted(a) if a[op] > b.get(op, 0)}
    return {"nodes_before": sum(a.values()), "nodes_after": sum(b.values()), "removed": fewer}


def warning_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    lines: list[str] = []
    for w in caught:
        text = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        if any(text.startswith(n) for n in _EXPORTER_NOISE):
            continue
        line = f"{w.category.__name__}: {text} ({Path(w.filename).name}:{w.lineno})"
        if line not in lines:
            lines.append(line)
    return lines
