"""``worker export`` from the command line: flags -> ``ExportRequest`` -> the JSON report.

Kept apart from ``worker.cli`` (which only registers the flags) and free of torch at import:
the first thing the command does is check that PyTorch is there, and say how to get it.
"""

from __future__ import annotations

import argparse
import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

from worker.errors import DependencyError, ExportError

__all__ = ["add_arguments", "cmd_export"]

log = logging.getLogger("worker")

INSTALL_HINT = "pip install '.[export]' (in a checkout) or pip install 'video-worker[export]'"


def add_arguments(e: argparse.ArgumentParser) -> None:
    """The flags of ``worker export``; ``worker.cli`` makes the subparser."""
    e.add_argument("--factory", required=True, help="module:function returning the nn.Module")
    e.add_argument("--factory-kwargs", help="JSON object of keyword arguments for the factory")
    e.add_argument("--weights", type=Path, required=True, help="checkpoint (.pth/.pt)")
    e.add_argument(
        "--trust-weights",
        action="store_true",
        help="unpickle the checkpoint in full (runs code from the file: trusted files only)",
    )
    e.add_argument("--input-shape", required=True, help="N,3,H,W or N,H,W,3, e.g. 1,3,512,512")
    e.add_argument(
        "--dynamic", default="batch", help="dims left dynamic: batch,height,width or none"
    )
    e.add_argument("--opset", type=int, default=17)
    e.add_argument(
        "--output",
        type=Path,
        required=True,
        help="the .onnx to write, or a name: <WORKER_MODEL_ROOT>/<name>/model.onnx + card.json",
    )
    e.add_argument("--task", choices=["segment", "classify"], help="default: from the output")
    e.add_argument("--labels", type=Path, help="text file, one class name per line")
    e.add_argument("--color-order", choices=["rgb", "bgr"], help="default rgb")
    e.add_argument("--scale", help="multiplied into uint8 pixels first (default 1/255)")
    e.add_argument("--mean", help="3 values after scale, in colour order (default ImageNet)")
    e.add_argument("--std", help="3 values (default ImageNet)")
    e.add_argument("--resize", choices=["stretch", "letterbox", "center_crop"])
    e.add_argument("--crop-from", type=int, help="center_crop: shorter side resized to this")
    e.add_argument(
        "--interpolation", choices=["linear", "area", "antialias"],
        help="how the model was trained to see resized images: antialias for torchvision's "
        "Resize (its default), linear for cv2 (default linear)",
    )  # fmt: skip
    e.add_argument("--activation", choices=["auto", "softmax", "sigmoid", "none"])
    e.add_argument("--samples", type=Path, help="folder of images to verify on, besides noise")
    e.add_argument(
        "--rtol", type=float, default=1e-3,
        help="outputs match within atol + rtol x |PyTorch's output| (1e-3)",
    )  # fmt: skip
    e.add_argument(
        "--atol", "--tolerance", dest="atol", type=float, default=1e-5,
        help="absolute part of that (1e-5); --tolerance is the old name",
    )  # fmt: skip
    e.add_argument(
        "--min-agreement", dest="min_agreement", type=float, default=0.99,
        help="share of top-1 labels or mask pixels that must match, on the samples if given "
        "(0.99)",
    )  # fmt: skip
    e.add_argument("--no-simplify", action="store_true", help="skip onnxslim/onnxsim")
    e.add_argument(
        "--half", action="store_true",
        help="float16 weights and activations (for GPUs), checked against float32",
    )  # fmt: skip
    e.add_argument(
        "--quantize", choices=["int8"],
        help="static int8 (QDQ), calibrated on --samples, checked against float32",
    )  # fmt: skip
    e.add_argument("--input-name", default="image")
    e.add_argument("--output-name", default="output")
    e.add_argument("--debug", action="store_true", default=None, help="tracebacks on errors")


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ExportError(f"{flag} '{text}': expected comma-separated integers") from None


def _three(text: str, flag: str) -> tuple[float, float, float]:
    try:
        a, b, c = (float(v) for v in text.split(","))
    except ValueError:
        raise ExportError(f"{flag} '{text}': expected 3 comma-separated numbers") from None
    return a, b, c


def _labels(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ExportError(f"--labels '{path}': cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise ExportError(f"--labels '{path}': not UTF-8 text") from e
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise ExportError(f"--labels '{path}': no labels in it (one per line)")
    return labels


def _card_flags(args: argparse.Namespace) -> dict[str, Any]:
    from worker.export.request import CARD_FLAGS

    card: dict[str, Any] = {}
    if args.scale is not None:
        try:
            card["scale"] = float(Fraction(args.scale))  # 1/255 reads as it is written
        except (ValueError, ZeroDivisionError):
            raise ExportError(f"--scale '{args.scale}': expected a number, e.g. 1/255") from None
    if args.mean is not None:
        card["mean"] = _three(args.mean, "--mean")
    if args.std is not None:
        card["std"] = _three(args.std, "--std")
    for name in set(CARD_FLAGS) - {"scale", "mean", "std"}:
        if getattr(args, name) is not None:
            card[name] = getattr(args, name)
    return card


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise DependencyError(
                f"worker export: PyTorch cannot import '{e.name}'; reinstall: {INSTALL_HINT}"
            ) from e
        raise DependencyError(
            f"worker export needs PyTorch, which is not installed: {INSTALL_HINT}"
        ) from e
    except ImportError as e:
        raise DependencyError(
            f"worker export: PyTorch fails to import ({e}); reinstall: {INSTALL_HINT}"
        ) from e


def cmd_export(args: argparse.Namespace) -> int:
    _require_torch()
    from worker.export.request import ExportRequest
    from worker.export.steps import export_model

    shape = _ints(args.input_shape, "--input-shape")
    if len(shape) != 4:
        raise ExportError(
            f"--input-shape '{args.input_shape}': expected 4 sizes, N,3,H,W or N,H,W,3"
        )
    dynamic = frozenset(
        d.strip() for d in args.dynamic.split(",") if d.strip() and d.strip() != "none"
    )
    kwargs: Any = {}
    if args.factory_kwargs is not None:
        try:
            kwargs = json.loads(args.factory_kwargs)
        except json.JSONDecodeError as e:
            raise ExportError(f"--factory-kwargs: not valid JSON ({e})") from None
        if not isinstance(kwargs, dict):
            raise ExportError("--factory-kwargs: expected a JSON object, e.g. '{\"classes\": 4}'")
    request = ExportRequest(
        factory=args.factory,
        weights=args.weights,
        input_shape=(shape[0], shape[1], shape[2], shape[3]),
        output=_output_path(args.output),
        dynamic=dynamic,
        opset=args.opset,
        task=args.task,
        labels=_labels(args.labels) if args.labels is not None else None,
        card=_card_flags(args),
        samples=args.samples,
        rtol=args.rtol,
        atol=args.atol,
        min_agreement=args.min_agreement,
        simplify=not args.no_simplify,
        half=args.half,
        quantize=args.quantize,
        factory_kwargs=kwargs,
        trust_weights=args.trust_weights,
        input_name=args.input_name,
        output_name=args.output_name,
    )
    report = export_model(request)
    for line in report["warnings"]:
        log.warning("%s", line)
    print(json.dumps(report, indent=2))
    return 0


def _output_path(value: Path) -> Path:
    """``--output mymodel`` (a name: no suffix, no folder) is a new folder in the model
    repository."""
    from worker.models.repository import MODEL_FILE, is_model_name
    from worker.settings import load_settings

    text = str(value)
    if value.suffix or not is_model_name(text):
        return value  # a file name (ending in .onnx, or refused for not doing so)
    return load_settings().model_root / text / MODEL_FILE
