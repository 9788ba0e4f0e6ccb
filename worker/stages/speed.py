"""How a run uses the machine: graph fusion, batching waits, decode/encode hardware, and the
ONNX Runtime session options. One frozen value handed to ``run_file(..., speed=...)``.

Every default is the fast and safe choice on the machine at hand: fusion on, hardware
decode/encode tried and silently skipped where absent, CUDA options that only take effect
where CUDA really loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from worker.models.engine import EngineOptions
from worker.models.fused_cache import default_cache_dir
from worker.settings import Settings

__all__ = ["Encoder", "HwDecode", "Speed"]

HwDecode = Literal["auto", "cuda", "off"]
Encoder = Literal["auto", "libx264", "h264_nvenc"]


@dataclass(frozen=True)
class Speed:
    fuse: bool = True  # uint8 in, uint8 out graph around the model; off: numpy pre/post
    resize_in_graph: bool = False  # stretch only: frames cross at full size, Resize in graph
    # Live sources: the longest a frame waits for its batch to fill. Files never wait (they
    # are lossless: every batch is full but the last).
    batch_wait_s: float = 0.04
    decode_threads: int = 0  # 0: one per core
    hw_decode: HwDecode = "auto"  # auto: NVDEC when a CUDA device opens, else software
    encoder: Encoder = "auto"  # auto: NVENC when it opens, else libx264
    engine: EngineOptions = field(default_factory=EngineOptions)
    # Fused graphs kept here between runs (``worker.models.fused_cache``); None: not kept.
    cache_dir: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> Speed:
        """From the settings' speed fields (CUDA ones act only where CUDA really loads)."""
        return cls(
            fuse=s.fuse,
            resize_in_graph=s.resize_in_graph,
            batch_wait_s=s.batch_wait_ms / 1000.0,
            decode_threads=s.decode_threads,
            hw_decode=s.hw_decode,
            encoder=s.encoder,
            cache_dir=str(s.cache_dir or default_cache_dir()) if s.fuse_cache else None,
            engine=EngineOptions(
                cudnn_conv_algo_search=s.cudnn_conv_algo_search,
                gpu_mem_limit=s.gpu_mem_limit,
                cuda_graph=s.cuda_graph,
                tensorrt=s.tensorrt,
                trt_fp16=s.trt_fp16,
                trt_cache=str(s.trt_cache) if s.trt_cache is not None else None,
            ),
        )
