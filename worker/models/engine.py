"""One ONNX Runtime session, run through IO binding on whichever device it landed on.

The CUDA and CPU paths share every line but the device name handed to ONNX Runtime, so the
tests, which run on CPU, exercise the same binding code a GPU run uses. (No CUDA provider can
be loaded in our CI; that path is checked on paper and by ``session.get_providers()``.)

Buffers: for every input shape a thread runs, one input OrtValue and one OrtValue per output
are allocated on the session's device once and then refilled in place (``update_inplace``,
``bind_ortvalue_output``), so a run allocates nothing on the device and only the bytes of the
batch and of the outputs cross between host and device. The counters ``bytes_in`` and
``bytes_out`` say how many did.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# ONNX Runtime's telemetry warns on stderr at import when it cannot save a device id (HOME not
# writable: a container, a service user). The worker says nothing to Microsoft either way.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort

from worker.allocator import release_free
from worker.devices import no_nvidia_device
from worker.errors import ModelError, ProviderError

__all__ = ["Engine", "EngineOptions", "OutputSpec", "providers_for", "session_options"]

log = logging.getLogger(__name__)

Device = Literal["cuda", "cpu"]
_TRT = "TensorrtExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
#: Shapes whose buffers one thread keeps: a file run sees two (full batches, the last partial
#: one); varying shapes (e.g. in-graph resize over many videos) must not grow memory forever.
_MAX_SHAPES = 4
#: (shape, dtype) of one output, known before the run (needed by CUDA graphs).
OutputSpec = tuple[tuple[int, ...], np.dtype[Any]]


@dataclass(frozen=True)
class EngineOptions:
    """How sessions are made and run. The CUDA/TensorRT fields take effect only where the CUDA
    provider really loads (not in this project's CI: written, not run here)."""

    io_binding: bool = True  # off: session.run() with numpy in and out (for comparison)
    # EXHAUSTIVE pays a one-off search per input shape: right for fixed shapes, wrong when
    # shapes vary. HEURISTIC is the safe default.
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"
    gpu_mem_limit: int = 0  # bytes for the CUDA arena; 0: no limit
    cuda_graph: bool = False  # capture once, replay: fixed shapes, one thread, fixed buffers
    tensorrt: bool = False  # try the TensorRT provider before CUDA
    trt_fp16: bool = False
    trt_cache: str | None = None  # engine + timing cache directory; None: no cache
    # TensorRT optimisation profile for dynamic inputs: (min, opt, max), each "name:1x2x3x4".
    trt_profile: tuple[str, str, str] | None = field(default=None, compare=False)

    def cuda(self) -> dict[str, str]:
        opts = {
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            # Copies on the compute stream keep input copies ordered with the kernels.
            "do_copy_in_default_stream": "1",
            "arena_extend_strategy": "kSameAsRequested",
        }
        if self.gpu_mem_limit:
            opts["gpu_mem_limit"] = str(self.gpu_mem_limit)
        if self.cuda_graph:
            opts["enable_cuda_graph"] = "1"
        return opts

    def trt(self) -> dict[str, str]:
        opts = {"trt_fp16_enable": "1" if self.trt_fp16 else "0"}
        if self.trt_cache:
            opts |= {
                "trt_engine_cache_enable": "1",
                "trt_engine_cache_path": self.trt_cache,
                "trt_timing_cache_enable": "1",
                "trt_timing_cache_path": self.trt_cache,
            }
        if self.trt_profile is not None:
            lo, opt, hi = self.trt_profile
            opts |= {
                "trt_profile_min_shapes": lo,
                "trt_profile_opt_shapes": opt,
                "trt_profile_max_shapes": hi,
            }
        if self.cuda_graph:
            opts["trt_cuda_graph_enable"] = "1"
        return opts


def providers_for(device: Device, options: EngineOptions) -> list[Any]:
    """The provider list handed to ONNX Runtime for a device: GPU ones first, CPU last."""
    if device == "cpu":
        return [_CPU]
    chain: list[Any] = []
    if options.tensorrt:
        chain.append((_TRT, options.trt()))
    return [*chain, (_CUDA, options.cuda()), _CPU]


def intra_threads(threads: int, lanes: int, device: Device) -> int:
    """Intra-op threads a run gets: ``threads`` if set; on the CPU the cores shared by the
    ``lanes`` runs in flight at once; on CUDA (where they run only the nodes left on the CPU)
    the cores."""
    cores = os.cpu_count() or 1
    if threads:
        return threads
    return max(1, cores // max(1, lanes)) if device == "cpu" else cores


def session_options(
    threads: int, lanes: int, options: EngineOptions, device: Device
) -> ort.SessionOptions:
    """How the worker makes every ONNX Runtime session (``Engine``), for ``lanes`` runs in
    flight on ``device``."""
    opts = ort.SessionOptions()
    # A pipeline also decodes and encodes on these cores: spinning intra-op threads would
    # steal their CPU while waiting for work, so they sleep instead.
    opts.intra_op_num_threads = intra_threads(threads, lanes, device)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's memory pattern plans one block per input shape and run; with lanes each
    # run in flight holds one, activations and all (on a 736x1280 map, +35 MiB of peak RSS
    # for no gain in speed). Without it tensors come from the arena as they are made and go
    # back to it as their last reader is done.
    opts.enable_mem_pattern = False
    if options.cuda_graph and device == "cuda":
        # A node silently placed on the CPU breaks graph capture; make it a load-time error.
        opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    # Fatal only: every failure reaches the caller as an exception, which the CLI prints as
    # its one error line; ONNX Runtime's own ERROR log line would be a second one.
    opts.log_severity_level = 4
    return opts


def _try_cuda(
    model: bytes | str, threads: int, options: EngineOptions
) -> ort.InferenceSession | None:
    """A CUDA (or TensorRT) session if the provider really loads here, else None (ORT falls
    back to the CPU silently)."""
    if _CUDA not in ort.get_available_providers():
        return None
    absent = no_nvidia_device()
    if absent is not None:
        # A try would build the whole session and, CUDA failing, keep it on the CPU: the
        # weights read and optimised for nothing (27 ms and their memory for a 2.6 GFLOPs
        # detector; seconds for a large model).
        log.debug("CUDA not tried: %s", absent)
        return None
    # ORT lists CUDA whenever it was compiled in and logs an error when the libraries are
    # missing; we report the outcome ourselves, once, so silence that line.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(
            model,
            sess_options=session_options(threads, 1, options, "cuda"),
            providers=providers_for("cuda", options),
        )
    except Exception as e:
        log.info("CUDA session could not be created: %s", e)
        return None
    finally:
        ort.set_default_logger_severity(2)
    return session if session.get_providers()[0] in (_TRT, _CUDA) else None


class _Slot:
    """A thread's buffers for one input shape: bound once, refilled in place every run."""

    def __init__(self, session: ort.InferenceSession, device: Device, key: Any) -> None:
        shape, dtype = key
        self.binding = session.io_binding()
        self.input = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, device, 0)
        self.outputs: list[Any] | None = None  # bound on the first run when not given


class Engine:
    """Runs one model: ``run(batch) -> first output``, ``run_all(batch) -> every output``."""

    def __init__(
        self,
        model: bytes | str,  # serialized, or a path (needed for weights in external files)
        *,
        provider: str = "auto",
        threads: int = 0,
        lanes: int = 1,
        name: str = "model",
        options: EngineOptions | None = None,
    ) -> None:
        """``lanes``: how many threads run the model at once (a pipeline's lanes); on the CPU
        they share the cores, so each run gets cores / lanes intra-op threads unless
        ``threads`` says otherwise."""
        if provider not in ("auto", "cuda", "cpu"):
            raise ProviderError(f"provider '{provider}': expected auto, cuda or cpu")
        options = options or EngineOptions()
        self.name = name
        self.threads = threads
        self.lanes = lanes
        self.options = options
        self._model = model
        self._session: ort.InferenceSession | None = None
        self._session_lock = threading.Lock()
        if provider in ("auto", "cuda"):
            self._session = _try_cuda(model, threads, options)  # None where CUDA is absent
        if self._session is None and provider == "cuda":
            raise ProviderError(
                "provider 'cuda': the CUDA execution provider did not load on this machine "
                "(it needs an NVIDIA GPU with CUDA 13 and cuDNN 9); use --provider cpu or auto"
            )
        # On the CPU the session is made when first used: a model whose fused graph and facts
        # come from the cache never runs its plain session, and making it cost a load of the
        # weights (time and memory: a second copy of a 100 MB model) for nothing.
        self.device: Device = "cuda" if self._session is not None else "cpu"
        self.provider = self.device
        # With lanes on the CPU a run gets one lane's share of the cores, but the engine's
        # first run has them all to itself: the other lanes wait for it (their frames come
        # right behind), so it runs on every core (a 736x1280 map: 125 -> 65 ms to the first
        # answer here). It has a session of its own, made first and dropped after it; the
        # lanes' session is made at their next run, so the weights are never held twice and
        # a one-frame run makes one session, as before.
        self._opening = (
            self.device == "cpu" and not threads and lanes > 1 and (os.cpu_count() or 1) > 1
        )
        self._opening_lock = threading.Lock()
        self._opened = False  # the opening run's session went; what it freed is not given back
        # Per thread: a session may run in several threads at once, a binding may not.
        self._local = threading.local()
        # CUDA graphs replay fixed device addresses: one set of buffers, one run at a time.
        self.graph_capture = options.cuda_graph and self.device == "cuda"
        self._graph_lock = threading.Lock() if self.graph_capture else None
        self._graph_slots: OrderedDict[Any, _Slot] = OrderedDict()
        self._count_lock = threading.Lock()
        self.runs = 0
        self.bytes_in = 0  # host -> device, all runs
        self.bytes_out = 0  # device -> host, all runs

    @property
    def session(self) -> ort.InferenceSession:
        """The ONNX Runtime session (made on first use on the CPU; ``ModelError`` if it
        cannot be)."""
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    if self._opened:
                        # Before the lanes' arena grows, the memory the opening run freed goes
                        # back to the system (the 736x1280 map's whole runs: +31 MiB of peak
                        # against the lanes alone without it, +14 with). Not earlier: a
                        # one-frame run has no use for it (1-8 ms here).
                        self._opened = False
                        release_free()
                    opts = session_options(
                        self.threads, 1 if self._opening else self.lanes, self.options, "cpu"
                    )
                    if self._opening:
                        # Its activations go back to malloc as the run frees them (and from
                        # there to the system, above, when the lanes' session is made). In an
                        # arena of its own they stayed where the lanes' arena did not reuse
                        # them: +29 MiB of the 736x1280 map's peak, against +14 without.
                        opts.enable_cpu_mem_arena = False
                    try:
                        self._session = ort.InferenceSession(
                            self._model, sess_options=opts, providers=[_CPU]
                        )
                    except Exception as e:
                        raise ModelError(
                            f"model '{self.name}': ONNX Runtime cannot load it ({e})"
                        ) from e
        return self._session

    def load(self) -> Engine:
        """Make the session now (so a model that cannot load says so at once)."""
        _ = self.session
        return self

    @property
    def input_name(self) -> str:
        return str(self.session.get_inputs()[0].name)

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    @property
    def output_name(self) -> str:
        return self.output_names[0]

    def derive(
        self,
        model: bytes | str,
        *,
        name: str,
        options: EngineOptions | None = None,
        lanes: int | None = None,
    ) -> Engine:
        """Another model on the same provider and threads (e.g. the fused graph of this one);
        ``lanes``: if the runs in flight differ from this engine's."""
        return Engine(
            model,
            provider=self.provider,
            threads=self.threads,
            lanes=self.lanes if lanes is None else lanes,
            name=name,
            options=options or self.options,
        )

    def run(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Run one batch; returns the first output as a host array."""
        return self.run_all(batch)[0]

    def output_shape(self, batch: np.ndarray[Any, Any]) -> tuple[int, ...]:
        """The first output's shape for ``batch``, without copying the output to the host
        (a probe: a 21-class map at 512x512 is 22 MB to copy, for four numbers)."""
        if not self.options.io_binding:
            return tuple(int(d) for d in self.run(batch).shape)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch))
        for name in self.output_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return tuple(int(d) for d in binding.get_outputs()[0].shape())

    def run_all(
        self,
        batch: np.ndarray[Any, Any],
        outputs: Sequence[OutputSpec] | None = None,
        *,
        fixed: bool = True,
    ) -> list[np.ndarray[Any, Any]]:
        """Run one batch; every output as a host array (a copy: the buffers are reused).

        ``outputs``: the output shapes and dtypes if known, so that the output buffers exist
        before the first run (CUDA graphs capture their addresses then); else they are
        learnt on the first run of each input shape. ``fixed`` False: the output shapes
        change from run to run (NMS's kept boxes): ONNX Runtime allocates them every run.
        """
        if self._opening:
            with self._opening_lock:  # the other lanes wait here while it runs
                if self._opening:
                    return self._opening_run(batch)
        if not self.options.io_binding:
            got: list[np.ndarray[Any, Any]] = self.session.run(None, {self.input_name: batch})
            self._count(batch, got)
            return got
        if self._graph_lock is not None:
            with self._graph_lock:
                if not fixed:
                    raise ModelError(f"model '{self.name}': CUDA graphs need fixed output shapes")
                return self._bound(self._graph_slots, batch, outputs)
        slots = getattr(self._local, "slots", None)
        if slots is None:
            slots = self._local.slots = OrderedDict()
        return self._bound(slots, batch, outputs, fixed)

    def _opening_run(self, batch: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        """The first run, on every core, in the session made for it (no buffers bound: they
        would belong to a session about to go); then the session goes."""
        try:
            got: list[np.ndarray[Any, Any]] = self.session.run(None, {self.input_name: batch})
        finally:
            with self._session_lock:
                self._opening = False
                self._session = None
                self._opened = True
        self._count(batch, got)
        return got

    def bound_shapes(self) -> dict[tuple[int, ...], list[tuple[int, ...]] | None]:
        """This thread's buffers: input shape -> bound output shapes (None: not yet bound)."""
        slots = (
            self._graph_slots if self._graph_lock is not None else getattr(self._local, "slots", {})
        )
        return {
            key[0]: None if s.outputs is None else [tuple(v.shape()) for v in s.outputs]
            for key, s in slots.items()
        }

    def _bound(
        self,
        slots: OrderedDict[Any, _Slot],
        batch: np.ndarray[Any, Any],
        outputs: Sequence[OutputSpec] | None,
        fixed: bool = True,
    ) -> list[np.ndarray[Any, Any]]:
        key = (tuple(batch.shape), np.dtype(batch.dtype))
        slot = slots.get(key)
        if slot is None:
            if self._graph_lock is not None and slots:
                raise ModelError(
                    f"model '{self.name}': CUDA graphs need one input shape; got "
                    f"{list(batch.shape)} after {list(next(iter(slots))[0])}"
                )
            if self._graph_lock is not None and outputs is None:
                raise ModelError(
                    f"model '{self.name}': CUDA graphs need the output shapes before the first "
                    "run (set cuda_graph off for this model)"
                )
            slot = slots[key] = _Slot(self.session, self.device, key)
            slot.binding.bind_ortvalue_input(self.input_name, slot.input)
            if outputs is not None:
                self._bind_outputs(slot, outputs)
            else:
                for name in self.output_names:
                    slot.binding.bind_output(name, self.device)
            while len(slots) > _MAX_SHAPES:
                slots.popitem(last=False)
        else:
            slots.move_to_end(key)
        slot.input.update_inplace(np.ascontiguousarray(batch))
        if not fixed:  # the binding holds the last run's outputs: let this run size its own
            for name in self.output_names:
                slot.binding.bind_output(name, self.device)
        try:
            self.session.run_with_iobinding(slot.binding)
        except Exception:
            if slot.outputs is None or self._graph_lock is not None:
                raise
            # ONNX Runtime checks bound outputs against the shapes it infers before it runs,
            # so a model that cannot take this batch would fail here with a message about our
            # buffers. Let it allocate and run again: the model's own error (or, if our shapes
            # were wrong, a result) is what the caller needs.
            for name in self.output_names:
                slot.binding.bind_output(name, self.device)
            slot.outputs = None
            self.session.run_with_iobinding(slot.binding)
        got = slot.binding.copy_outputs_to_cpu()
        if slot.outputs is None and fixed:
            # First run of this shape: from now on, write into buffers of the shapes seen.
            self._bind_outputs(slot, [(tuple(o.shape), o.dtype) for o in got])
        self._count(batch, got)
        return list(got)

    def _bind_outputs(self, slot: _Slot, specs: Sequence[OutputSpec]) -> None:
        if len(specs) != len(self.output_names):
            raise ModelError(
                f"model '{self.name}': {len(self.output_names)} outputs, {len(specs)} specs"
            )
        slot.outputs = []
        for name, (shape, dtype) in zip(self.output_names, specs, strict=True):
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, self.device, 0)
            slot.binding.bind_ortvalue_output(name, value)
            slot.outputs.append(value)

    def _count(self, batch: np.ndarray[Any, Any], outs: Sequence[np.ndarray[Any, Any]]) -> None:
        with self._count_lock:
            self.runs += 1
            self.bytes_in += batch.nbytes
            self.bytes_out += sum(o.nbytes for o in outs)
