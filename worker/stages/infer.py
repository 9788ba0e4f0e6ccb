"""Inference stage: micro-batches of frames -> one model run -> one answer per frame.

Two paths give the same answers (``tests/test_fuse.py`` holds them to it):

- fused (default): the host only resizes frames to the model size as uint8 (one cv2 call per
  frame); the fused graph (``worker.models.fuse``) does colour order, layout, normalisation, the
  model and the post-processing, and returns uint8 masks or top-k numbers;
- plain: numpy ``preprocess`` -> the model -> numpy ``segment``/``classify``. Used when fusion
  is switched off or the model cannot be fused (a log line says why).

The fused session is built once per (model, options) and shared: a queue worker running many
jobs on one loaded model does not rebuild it per job.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from worker.description import Speed
from worker.errors import FuseError, ModelError
from worker.models import Engine, Model, fused_cache
from worker.models.engine import EngineOptions
from worker.models.fuse_spec import BOX_KINDS, FusedGraph, FuseSpec, split_rows
from worker.ops.detect import Form, detections
from worker.ops.postprocess import classify, segment, shown_from_bits
from worker.ops.preprocess import InputPlan, planar, preprocess, warp
from worker.ops.zones import FrameZones
from worker.stages.frames import Answer

__all__ = ["Inferencer", "engine_options", "fuse_spec", "infer_frames", "plan_for"]

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


def plan_for(model: Model) -> InputPlan:
    return InputPlan(
        hw=model.input_hw,
        layout=model.graph.layout,
        dtype=model.graph.input.dtype,
        rgb=model.color_order == "rgb",
        scale=model.scale,
        mean=model.mean,
        std=model.std,
        resize=model.resize,
        crop_from=model.crop_from,
        interpolation=model.interpolation,
        pad=model.pad,
    )


def engine_options(speed: Speed) -> EngineOptions:
    """How ONNX Runtime sessions are made, from the speed section (the CUDA and TensorRT
    fields take effect only where CUDA really loads)."""
    return EngineOptions(
        io_binding=speed.io_binding,
        cudnn_conv_algo_search=speed.cudnn_conv_algo_search,
        gpu_mem_limit=speed.gpu_mem_limit,
        cuda_graph=speed.cuda_graph,
        tensorrt=speed.tensorrt,
        trt_fp16=speed.trt_fp16,
        trt_cache=str(speed.trt_cache) if speed.trt_cache is not None else None,
    )


def _cache_dir(speed: Speed) -> str | None:
    """Where fused graphs are kept between runs (``worker.models.fused_cache``); None: not."""
    where = fused_cache.cache_dir_for(speed)
    return str(where) if where is not None else None


def fuse_spec(model: Model, *, top_k: int = 5, resize_in_graph: bool = False) -> FuseSpec:
    """What the fused graph must do for ``model``. An in-graph resize is stretch only; other
    resize modes keep the host warp (their borders and offsets are a warp, not a Resize)."""
    kind = model.kind
    if kind == "boxes_e2e":
        raise FuseError(f"a {model.task} model's output ({kind}) is not fused")
    plan = plan_for(model)
    a, b = plan.normaliser()
    return FuseSpec(
        layout=plan.layout,
        dtype=np.dtype(plan.dtype),
        hw=plan.hw,
        batch=model.batch,
        rgb=plan.rgb,
        a=(float(a[0]), float(a[1]), float(a[2])),
        b=(float(b[0]), float(b[1]), float(b[2])),
        kind=kind,
        activation=model.activation,
        threshold=model.threshold,
        output_dtype=np.dtype(model.graph.output.dtype),
        output_shape=model.output_shape,
        # Only a classifier's graph holds a TopK: a segmenter's is the same whatever top_k says,
        # so a worker running jobs with different top_k reuses its session.
        top_k=top_k if model.kind == "scores" else 0,
        # ONNX Resize is plain linear: another filter stays on the host.
        resize_in_graph=resize_in_graph
        and model.resize == "stretch"
        and model.interpolation == "linear",
        conf=model.threshold,
        iou=model.iou,
        max_det=model.max_det,
    )


@dataclass(frozen=True)
class _Built:
    engine: Engine
    fused: FusedGraph | None
    why_unfused: str | None


# Per loaded model (its plain engine), the sessions built for it, keyed by what shapes them.
_BUILT: weakref.WeakKeyDictionary[Engine, dict[Any, _Built]] = weakref.WeakKeyDictionary()
_BUILT_LOCK = threading.Lock()


def _trt_profile(g: FusedGraph, batch: int) -> tuple[str, str, str] | None:
    s = g.spec
    if s.batch is not None or s.resize_in_graph:
        return None  # fixed shapes need no profile; frame-sized inputs have no fixed range
    name = g.input_name

    def dims(n: int) -> str:
        return f"{name}:{'x'.join(map(str, g.input_shape(n, s.hw)))}"

    return (dims(1), dims(batch), dims(batch))


def _cached_key(model: Model, spec: FuseSpec, cache_dir: str | None) -> str | None:
    if cache_dir is None or model.graph.external:
        return None
    return fused_cache.entry_key(model.path, spec, model.graph.sha256)


def _build_fused(
    model: Model,
    spec: FuseSpec,
    options: EngineOptions,
    batch: int,
    cache_dir: str | None,
    lanes: int,
) -> _Built:
    key = _cached_key(model, spec, cache_dir)
    hit = fused_cache.load(Path(cache_dir), key) if cache_dir and key else None
    data: bytes | str
    if hit is not None:
        data, names = hit
        g = FusedGraph(None, spec, str(names["input_name"]), tuple(names["output_names"]))
    else:
        from worker.models.fuse import fuse  # onnx: only when the graph is built

        g = fuse(model.graph.load_proto(), spec)
        assert g.proto is not None
        try:
            data = g.proto.SerializeToString()
        except ValueError as e:  # protobuf refuses messages over 2 GB
            raise FuseError(f"the fused graph cannot be serialised ({e})") from e
        g = replace(g, proto=None)  # the session has it from here; the protobuf can go
    if options.tensorrt:
        options = replace(options, trt_profile=_trt_profile(g, batch or 8))
    try:
        engine = model.engine.derive(
            data, name=f"{model.path} (fused)", options=options, lanes=lanes
        ).load()
        if hit is not None and not engine.graph_capture:
            return _Built(engine, g, None)  # it ran when it was cached (same versions)
        # One run on a blank batch: a graph ONNX Runtime accepts but cannot run must fall back
        # now, not fail a run that the plain path would finish.
        # (CUDA graphs capture the first shape they see: probe with the one the run uses.)
        n = model.batch or (batch if engine.graph_capture and batch else 1)
        frame_hw = spec.hw if not spec.resize_in_graph else (2 * spec.hw[0], 2 * spec.hw[1])
        blank = np.zeros(g.input_shape(n, frame_hw), np.uint8)
        want = g.output_specs(n)
        if want is None and engine.graph_capture:
            raise FuseError("CUDA graphs need fixed output shapes; NMS keeps a varying number")
        outs = engine.run_all(blank, want, fixed=want is not None)
    except FuseError:
        raise
    except Exception as e:
        raise FuseError(f"ONNX Runtime cannot run the fused graph: {e}") from e
    got = [(tuple(o.shape), o.dtype) for o in outs]
    if want is not None and got != want:
        raise FuseError(f"the fused graph gives {got}, expected {want}")
    if isinstance(data, bytes) and cache_dir and key:  # built here, not read from the cache
        names = {"input_name": g.input_name, "output_names": list(g.output_names)}
        fused_cache.store(Path(cache_dir), key, data, names)
    return _Built(engine, g, None)


def _build(model: Model, top_k: int, speed: Speed, batch: int, live: bool) -> _Built:
    # A model with NMS inside (e2e) gives a few boxes as it is: nothing to gain by fusing.
    fusing = speed.fuse and model.kind != "boxes_e2e"
    spec = fuse_spec(model, top_k=top_k, resize_in_graph=speed.resize_in_graph) if fusing else None
    options = engine_options(speed)
    # The runs in flight at once share the CPU's cores: each gets its share of threads,
    # whatever lanes the model was loaded for.
    lanes = speed.lanes_on(model.engine.device, live=live)
    key = (fusing, spec, options, lanes)
    with _BUILT_LOCK:
        built = _BUILT.setdefault(model.engine, {}).get(key)
        if built is not None:
            return built
        why = "switched off (fuse = false)" if speed.fuse is False else "NMS inside the model"
        if spec is not None:
            try:
                built = _build_fused(model, spec, options, batch, _cache_dir(speed), lanes)
            except FuseError as e:
                why = str(e)
                log.warning(
                    "model '%s': running unfused (plain model + numpy pre/post): %s",
                    model.path,
                    why,
                )
        if built is None:
            if options == model.engine.options and lanes == model.engine.lanes:
                engine = model.engine
            else:
                engine = model.engine.derive(
                    str(model.path), name=str(model.path), options=options, lanes=lanes
                )
            built = _Built(engine, None, why)
        _BUILT[model.engine][key] = built
        return built


class Inferencer:
    """Runs a model on lists of frames, padding to the graph's batch size where it is fixed."""

    def __init__(
        self,
        model: Model,
        *,
        top_k: int = 5,
        speed: Speed | None = None,
        batch: int = 0,
        live: bool = False,
    ) -> None:
        """Sessions are made for ``speed``'s lanes (``lanes_on``): on the CPU, one per core
        unless ``live`` (frames from cameras) or set, each run on its share of the cores. A
        caller that runs it from one thread alone wants ``Speed(lanes=1)``: every core a run."""
        self.model = model
        self.plan = plan_for(model)
        self.top_k = top_k
        self.speed = speed or Speed()
        built = _build(model, top_k, self.speed, batch, live)
        self.engine = built.engine
        self.fused = built.fused
        self.why_unfused = built.why_unfused
        # CUDA graphs replay one shape: pad every batch to the full size, as fixed graphs need.
        self.pad_to = model.batch or (batch if self.engine.graph_capture else None)
        self.lanes = self.engine.lanes  # the engine was made for them (``_build``)
        self._local = threading.local()  # per lane: its staging buffers, one per shape
        self.frames = 0
        self.bytes_in = 0  # to the inference device, including padding frames
        self.bytes_out = 0
        self._count_lock = threading.Lock()  # lanes run this at once

    def describe(self) -> dict[str, Any]:
        n = max(self.frames, 1)
        return {
            "fused": self.fused is not None,
            "unfused_because": self.why_unfused,
            "resize_in_graph": bool(self.fused and self.fused.spec.resize_in_graph),
            "device": self.engine.device,
            "io_binding": self.engine.options.io_binding,
            "device_bytes_per_frame": {
                "in": round(self.bytes_in / n),
                "out": round(self.bytes_out / n),
            },
        }

    def __call__(self, images: list[Array]) -> list[Answer]:
        n = len(images)
        answers: list[Answer] = []
        for group in self._groups(images):
            step = self.pad_to or len(group)
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                real = len(chunk)
                if self.pad_to and real < self.pad_to:
                    # A fixed-batch graph needs full batches: repeat the last frame, drop its
                    # answers.
                    chunk = chunk + [chunk[-1]] * (self.pad_to - real)
                answers.extend(self._run(chunk)[:real])
        with self._count_lock:
            self.frames += n
        return answers

    def _groups(self, images: list[Array]) -> list[list[Array]]:
        """Runs of frames one model call can take: all of them, unless frames cross at their
        own size (resize in the graph) and sizes differ (cameras of different resolutions):
        then consecutive frames of one size, in order."""
        if not (self.fused and self.fused.spec.resize_in_graph) or len(images) < 2:
            return [images]
        groups: list[list[Array]] = [[images[0]]]
        for img in images[1:]:
            if img.shape[:2] == groups[-1][0].shape[:2]:
                groups[-1].append(img)
            else:
                groups.append([img])
        return groups

    def _run(self, chunk: list[Array]) -> list[Answer]:
        return self.answers(self.run_staged(self.stage(chunk)), len(chunk))

    def stage(self, chunk: list[Array]) -> Array:
        """What crosses to the inference device for these frames. Fused: the uint8 frames at
        the model size as planes in its colour order (a uint8 NHWC model: as they are; with
        the resize in the graph: whole), in a buffer reused per shape; plain: the float model
        input from numpy ``preprocess``."""
        if self.fused is None:
            return preprocess(chunk, self.plan)
        shape = self.fused.input_shape(len(chunk), chunk[0].shape[:2])
        staging = getattr(self._local, "staging", None)
        if staging is None:
            staging = self._local.staging = {}
        buf = staging.get(shape)
        if buf is None:
            # Batch sizes and frame sizes may vary across a long-lived worker (two buffers
            # a shape when planar).
            if len(staging) >= 8:
                staging.clear()
            buf = staging[shape] = np.empty(shape, np.uint8)
        if self.fused.spec.resize_in_graph:
            if any(c.shape[:2] != shape[1:3] for c in chunk):
                raise ModelError("frames of one batch differ in size")
            np.stack(chunk, out=buf)
            return buf
        p = self.plan
        frames = buf  # warped straight into what crosses, unless it crosses as planes
        if self.fused.spec.planar:
            frames = staging.get(("warped", shape))
            if frames is None:
                frames = staging[("warped", shape)] = np.empty((len(chunk), *p.hw, 3), np.uint8)
        warp(
            chunk, p.hw, p.resize, p.crop_from, out=frames, interpolation=p.interpolation,
            pad=p.pad,
        )  # fmt: skip
        return planar(frames, buf, p.rgb) if frames is not buf else buf

    def run_staged(self, x: Array) -> list[Array]:
        """One model run on a staged batch; the outputs as host arrays."""
        if self.fused is None:
            m = self.model
            known = None
            if len(self.engine.output_names) == 1:  # the probe told its shape: bind it up front
                known = [((len(x), *m.output_shape[1:]), np.dtype(m.graph.output.dtype))]
            # (An instance segmenter's prototypes are its second output: kept.)
            outs = self.engine.run_all(x, known)[: 2 if m.kind == "boxes_v8seg" else 1]
        else:
            specs = self.fused.output_specs(len(x))
            outs = self.engine.run_all(x, specs, fixed=specs is not None)
        with self._count_lock:
            self.bytes_in += x.nbytes
            self.bytes_out += sum(o.nbytes for o in outs)
        return outs

    def answers(self, outs: list[Array], n: int) -> list[Answer]:
        """One answer per frame of the batch of ``n``, from the outputs of ``run_staged``."""
        if self.fused is not None:
            return self._fused_answers(outs, n)
        if self.model.task == "detect":
            return self._detections(outs)
        return self._plain_answers(outs[0])

    def _fused_answers(self, outs: list[Array], n: int) -> list[Answer]:
        assert self.fused is not None
        s = self.fused.spec
        if s.kind in BOX_KINDS:  # rows of every frame of the batch; prototypes per frame
            protos: list[Array | None] = list(outs[1]) if len(outs) > 1 else [None] * n
            rows = split_rows(outs[0], n)
            return [Answer(boxes=r, protos=p) for r, p in zip(rows, protos[:n], strict=True)]
        if s.kind == "scores":
            values, indices = outs
            return [
                Answer(top=[(int(i), float(v)) for v, i in zip(vr, ir, strict=True)])
                for vr, ir in zip(values, indices, strict=True)
            ]
        mask = outs[0]
        if s.kind == "multilabel":
            shown = shown_from_bits(mask, s.classes)
            return [Answer(class_map=c, bits=b) for c, b in zip(shown, mask, strict=True)]
        if mask.ndim == 4:  # [N,1,h,w] single-channel maps
            mask = mask[:, 0]
        return [Answer(class_map=c) for c in mask]

    def _detections(self, outs: list[Array]) -> list[Answer]:
        m = self.model
        form: Form = m.kind.removeprefix("boxes_")  # type: ignore[assignment]
        protos = outs[1] if len(outs) > 1 else [None] * len(outs[0])
        return [
            Answer(
                boxes=detections(o, form, conf=m.threshold, iou=m.iou, max_det=m.max_det),
                protos=p,
            )
            for o, p in zip(outs[0], protos, strict=True)
        ]

    def _plain_answers(self, out: Array) -> list[Answer]:
        m = self.model
        if m.kind == "scores":
            return [Answer(top=t) for t in classify(out, m.activation, self.top_k)]
        maps, bits = segment(out, m.kind, m.activation, m.threshold)
        if bits is None:
            return [Answer(class_map=c) for c in maps]
        return [Answer(class_map=c, bits=b) for c, b in zip(maps, bits, strict=True)]


def infer_frames(
    infer: Inferencer, images: list[Array], zones: list[FrameZones | None] | None = None
) -> list[Answer]:
    """Answers for frames; for a classifier with zones, each zone's crop is classified too,
    the crops of every frame batched into the same model calls as the frames themselves."""
    if not zones or infer.model.task != "classify" or not any(zones):
        return infer(images)
    batch: list[Array] = []
    spans: list[tuple[int, int]] = []  # per frame: where its crops sit in the batch
    for image, fz in zip(images, zones, strict=True):
        batch.append(image)
        crops = fz.crops(image) if fz is not None else []
        spans.append((len(batch), len(batch) + len(crops)))
        batch += crops
    answers = infer(batch)
    out = []
    for (lo, hi), fz in zip(spans, zones, strict=True):
        whole = answers[lo - 1]
        if fz is not None:
            whole.zones = {z.name: a for z, a in zip(fz.zones, answers[lo:hi], strict=True)}
        out.append(whole)
    return out
