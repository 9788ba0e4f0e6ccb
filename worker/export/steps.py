"""``worker export``: a PyTorch checkpoint -> a checked, verified ONNX model and its card.

Steps: build the network from its factory, load the weights, ``eval()`` and make sure it
really left training mode, export, ``onnx.checker``, simplify (onnxslim or onnxsim, if
installed), load it exactly as ``worker run`` will (graph + card), compare it with PyTorch,
and only then move the model and its card into place. A failure at any step leaves nothing.

The exporter call itself, and why it is torch's TorchScript one, is ``worker.export.exporter``.

torch is imported inside the functions: ``models`` must import without it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx.checker
import onnx.helper

from worker.errors import ExportError, ModelError, ShapeMismatch, VerificationError
from worker.export.checkpoint import build_network, check_eval_mode, load_weights
from worker.export.exporter import export_onnx, first_line, simplify, warning_lines
from worker.export.request import (
    DIMS,
    ExportRequest,
    card_fields,
    describe_tensor,
    input_axes,
    output_axes,
    output_classes,
    validate_request,
    verify_shapes,
)
from worker.export.verify import (
    Check,
    Reference,
    random_images,
    read_samples,
    sample_input,
    verify,
)
from worker.models.card import METADATA_KEY, ModelCard
from worker.models.fused_cache import file_sha256
from worker.models.model import load_model
from worker.models.repository import card_path_for
from worker.ops.preprocess import InputPlan, preprocess
from worker.stages.atomic import AtomicFile

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["export_model"]

Array = np.ndarray[Any, Any]


def _choose_output(raw: Any) -> tuple[torch.Tensor, str | int | None]:
    """The tensor the worker will read: the output itself, ``["out"]`` (torchvision's
    segmenters) or the first entry of a dict, or the first of a tuple/list."""
    import torch

    pick: str | int | None = None
    value = raw
    if isinstance(raw, Mapping) and raw:
        pick = "out" if "out" in raw else next(iter(raw))
        value = raw[pick]
    elif isinstance(raw, (tuple, list)) and raw:
        pick, value = 0, raw[0]
    if not isinstance(value, torch.Tensor):
        raise ExportError(
            f"the model returns a {type(raw).__name__}; expected a tensor (or a tuple or dict "
            "whose first entry, or 'out', is one)"
        )
    return value, pick


def _selected(net: nn.Module, pick: str | int | None) -> nn.Module:
    """``net`` itself, or a module returning only the output the worker reads."""
    if pick is None:
        return net
    from torch import nn

    class Selected(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net(x)[pick]

    return Selected().eval()


def _reference(module: nn.Module) -> Reference:
    """PyTorch's answer to a preprocessed batch, as numpy: what the export is checked against."""
    import torch

    def reference(x: Array) -> Array:
        with torch.inference_mode():
            out: Array = module(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        return out

    return reference


def _verify_as_worker_reads(
    req: ExportRequest,
    model_path: Path,
    card_path: Path,
    module: nn.Module,
    samples: list[Array],
) -> list[Check]:
    """Load the written files as ``worker run`` does and compare with PyTorch."""
    final_card = card_path_for(req.output)
    try:
        model = load_model(model_path, card=card_path, provider="cpu")
    except ModelError as e:
        text = str(e).replace(str(model_path), str(req.output))
        text = text.replace(str(card_path), str(final_card))
        raise ExportError(f"worker run would refuse the exported model: {text}") from e

    traced = tuple(req.input_shape)
    try:
        checks = verify(
            model, _reference(module), verify_shapes(req), samples, rtol=req.rtol, atol=req.atol
        )
    except ShapeMismatch as e:
        hint = ""
        if "for an input shaped" in str(e) and f"shaped {list(traced)}" not in str(e):
            hint = (
                "; the model is traced once at --input-shape, so Python control flow on "
                "shapes in forward() is frozen in the export"
            )
        raise VerificationError(f"verification failed: {e}{hint}") from e
    tolerance = f"--rtol {req.rtol:g} --atol {req.atol:g}"

    def said(c: Check) -> str:
        return (
            f"max abs diff {c.max_abs_diff:.3g} on {c.inputs} inputs shaped {list(c.shape)} "
            f"({c.measure} agreement {c.agreement:.1%})"
        )

    on_samples = [c for c in checks if c.inputs == "samples"]
    # With samples, the worker's answers on them are the verdict: real images are what the
    # model will see, and noise can sit on decision boundaries a real image never comes near.
    judged = on_samples or checks
    low = [c for c in judged if c.agreement < req.min_agreement]
    far = [] if on_samples else [c for c in checks if not c.close]
    if low or far:

        def reasons(c: Check) -> str:
            said_ = [f"below --min-agreement {req.min_agreement:g}"] if c in low else []
            said_ += [f"beyond {tolerance}"] if c in far else []
            return " and ".join(said_)

        why = "; ".join(f"{said(c)}, {reasons(c)}" for c in checks if c in low or c in far)
        hint = ""
        bad = low + far
        if all(tuple(c.shape) != traced for c in bad) and any(
            tuple(c.shape) == traced and c.close for c in checks
        ):
            hint = (
                f"; it agrees at the traced --input-shape {list(traced)}: the model is traced "
                "once, so Python control flow on shapes in forward() is frozen in the export"
            )
        raise VerificationError(f"verification failed: ONNX Runtime and PyTorch: {why}{hint}")
    return checks


def _reduce(
    req: ExportRequest,
    proto: onnx.ModelProto,
    model_path: Path,
    card_path: Path,
    module: nn.Module,
    images: list[Array],
) -> dict[str, Any]:
    """Replace the verified float32 model at ``model_path`` by its float16 or int8 version,
    and verify that against PyTorch by the worker's answers. Returns the report's part."""
    from worker.export.precision import to_half, to_int8
    from worker.models.cpu import cpu_flags, int8_weights

    fp32_bytes = model_path.stat().st_size
    weights = None if req.half else int8_weights(cpu_flags())
    if weights is None:
        small = to_half(proto)
    else:
        model = load_model(model_path, card=card_path, provider="cpu")
        batches = [sample_input(model, img) for img in images]
        small = to_int8(proto, req.input_name, batches, weights)
    # The card travels inside this one too.
    for prop in proto.metadata_props:
        if not any(p.key == prop.key for p in small.metadata_props):
            small.metadata_props.append(prop)
    model_path.write_bytes(small.SerializeToString())
    what = "--half" if req.half else "--quantize int8"
    try:
        model = load_model(model_path, card=card_path, provider="cpu")
    except ModelError as e:
        raise ExportError(f"{what}: worker run would refuse the converted model: {e}") from e
    checks = verify(
        model, _reference(module), verify_shapes(req), images, rtol=req.rtol, atol=req.atol
    )
    judged = [c for c in checks if c.inputs == "samples"] or checks
    low = [c for c in judged if c.agreement < req.min_agreement]
    if low:
        worst = "; ".join(
            f"{c.measure} agreement {c.agreement:.1%} on {c.inputs} inputs shaped "
            f"{list(c.shape)} (max abs diff {c.max_abs_diff:.3g})"
            for c in low
        )
        raise VerificationError(
            f"verification failed: the {what} model answers unlike PyTorch's float32 one: "
            f"{worst}, below --min-agreement {req.min_agreement:g}"
        )
    done: dict[str, Any] = {
        "against": "PyTorch float32, by the worker's answers (--min-agreement)",
        "bytes": model_path.stat().st_size,
        "float32_bytes": fp32_bytes,
        "verification": [c.to_dict() for c in checks],
    }
    if weights is not None:
        # Where they come from: int8 weights saturate on CPUs without VNNI.
        done["weights"] = f"{weights} (this CPU {'has' if weights == 'int8' else 'lacks'} VNNI)"
    return done


def export_model(req: ExportRequest) -> dict[str, Any]:
    """Run the whole export; returns the report ``worker export`` prints. Raises
    ``ExportError`` (``VerificationError`` for answers too far apart) with the reason."""
    import torch

    base = validate_request(req)
    with warnings.catch_warnings(record=True) as caught:
        # Every warning is collected and reported, except the exporter's notes on itself.
        warnings.simplefilter("always")
        try:
            report = _export_and_verify(req, base, torch.__version__)
        except VerificationError as e:
            lines = warning_lines(caught)
            if lines:
                raise VerificationError(f"{e}; the exporter warned: {lines[0]}") from e
            raise
    report["warnings"] = warning_lines(caught) + report["warnings"]
    return report


def _check_output(req: ExportRequest, shape: tuple[int, ...], *, integer: bool, dtype: Any) -> str:
    """The task the output serves (``--task``, else from its rank); ``ExportError`` if the
    output cannot serve it or the labels do not fit it."""
    task = req.task or ("classify" if len(shape) == 2 else "segment")
    fits = len(shape) == 2 and not integer if task == "classify" else len(shape) in (3, 4)
    if not fits:
        needs = "[N,C] scores" if task == "classify" else "[N,C,H,W], [N,1,H,W] or [N,H,W]"
        raise ExportError(
            f"the model's output is shaped {list(shape)} ({dtype}); --task {task} needs {needs}"
        )
    classes = output_classes(shape, integer)
    if req.labels is not None and classes is not None and len(req.labels) != classes:
        raise ExportError(
            f"--labels: {len(req.labels)} labels, but the model's output {list(shape)} has "
            f"{classes} classes"
        )
    return task


def _export_and_verify(req: ExportRequest, base: ModelCard, torch_version: str) -> dict[str, Any]:
    import torch

    samples = read_samples(req.samples) if req.samples is not None else []
    net = build_network(req.factory, req.factory_kwargs)
    loaded = load_weights(net, req.weights, spec=req.factory, trust=req.trust_weights)
    net.eval()

    plan = InputPlan(
        hw=req.hw,
        layout=req.layout,
        dtype=np.dtype(np.float32),
        rgb=base.color_order == "rgb",
        scale=base.scale,
        mean=base.mean,
        std=base.std,
        resize=base.resize,
        crop_from=base.crop_from,
        interpolation=base.interpolation,
    )
    dummy = torch.from_numpy(preprocess(random_images(req.input_shape[0], req.hw, 1), plan))
    try:
        with torch.inference_mode():
            raw = net(dummy)
    except Exception as e:
        raise ExportError(
            f"the model fails on an input shaped {list(dummy.shape)} (--input-shape): "
            f"{type(e).__name__}: {first_line(e)}"
        ) from e
    chosen, pick = _choose_output(raw)
    module = _selected(net, pick)
    pair = None
    if "batch" in req.dynamic:
        pair = torch.from_numpy(preprocess(random_images(2, req.hw, 2), plan))
    try:
        check_eval_mode(module, net, dummy, pair, rtol=req.rtol, atol=req.atol)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(
            f"the model fails on a batch of 2 (--dynamic has batch): {type(e).__name__}: "
            f"{first_line(e)}"
        ) from e

    shape = tuple(int(d) for d in chosen.shape)
    task = _check_output(req, shape, integer=not chosen.is_floating_point(), dtype=chosen.dtype)

    in_axes = input_axes(req)
    out_axes = output_axes(len(shape), req)
    proto = export_onnx(
        module,
        dummy,
        opset=req.opset,
        input_name=req.input_name,
        output_name=req.output_name,
        axes={req.input_name: in_axes, req.output_name: out_axes},
    )
    notes: list[str] = []
    simplifier = None
    slimmed = None
    if req.simplify:
        proto, simplifier, notes, slimmed = simplify(proto)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset != req.opset:
        raise ExportError(f"the exported model declares opset {opset}, not {req.opset}")
    card = card_fields(base, task, req)
    onnx.helper.set_model_props(
        proto,
        {
            # The card travels inside the model too: a model file alone still runs right.
            METADATA_KEY: json.dumps(card, separators=(",", ":")),
            "exported_by": "video-worker export",
            "torch": torch_version,
            "factory": req.factory,
            "weights": req.weights.name,
            "weights_sha256": file_sha256(req.weights),
            "input_shape": ",".join(map(str, req.input_shape)),
            "dynamic": ",".join(d for d in DIMS if d in req.dynamic),
        },
    )
    proto.doc_string = f"Exported by worker export from {req.factory} with {req.weights.name}."
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportError(f"the exported model fails onnx.checker: {first_line(e)}") from e

    made: list[AtomicFile] = []
    try:
        model_file = AtomicFile(req.output, "--output", into=made)
        card_file = AtomicFile(card_path_for(req.output), "card", into=made)
        model_file.temp.write_bytes(proto.SerializeToString())
        card_file.temp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        images = [img for _, img in samples]
        checks = _verify_as_worker_reads(req, model_file.temp, card_file.temp, module, images)
        reduced: dict[str, Any] | None = None
        if req.half or req.quantize:
            reduced = _reduce(req, proto, model_file.temp, card_file.temp, module, images)
    except BaseException:
        for f in made:
            f.discard()
        raise
    model_file.commit()
    card_file.commit()
    if any(c.inputs == "samples" for c in checks):
        notes += [
            f"on random inputs shaped {list(c.shape)} the outputs differ beyond --rtol "
            f"{req.rtol:g} --atol {req.atol:g} (max abs diff {c.max_abs_diff:.3g}); judged "
            "on the samples instead, where the answers agree"
            for c in checks
            if c.inputs == "random" and not c.close
        ]
    return {
        "model": str(req.output),
        "card": str(card_file.final),
        "task": task,
        "factory": req.factory,
        "weights": str(req.weights),
        "weights_found_in": loaded.source,
        "weights_prefixes_stripped": list(loaded.stripped),
        "exporter": f"torch {torch_version} torch.onnx.export (TorchScript)",
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "opset": opset,
        "input": describe_tensor(req.input_name, req.input_shape, in_axes),
        "output": describe_tensor(req.output_name, shape, out_axes),
        "output_selected": None if pick is None else f"[{pick!r}]",
        "dynamic": [d for d in DIMS if d in req.dynamic],
        "simplified_with": simplifier,
        "simplified": slimmed,
        "rtol": req.rtol,
        "atol": req.atol,
        "min_agreement": req.min_agreement,
        "verification": [c.to_dict() for c in checks],
        "precision": "float16" if req.half else "int8" if req.quantize else "float32",
        "reduced_precision": reduced,
        "samples": [str(p) for p, _ in samples],
        "warnings": notes,
    }
