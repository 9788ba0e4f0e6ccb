"""What this machine's CPU does with int8 weights (pure reading of ``/proc/cpuinfo``).

ONNX Runtime's x86 kernels for uint8 activations times int8 weights add pairs of products in
16 bits on CPUs without VNNI, and those sums saturate: an int8-weight model answers unlike
its float original there (on an AVX2-only AMD EPYC the test segmenter's int8 export agreed
on 98.4 % of mask pixels, off by up to 0.92). uint8 weights are summed in 32 bits on every
CPU. ``worker export`` picks the weights by this; a run warns about an int8-weight model on
a CPU that would saturate it.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Int8Weights", "cpu_flags", "int8_weights", "saturates_int8_weights"]

Int8Weights = Literal["int8", "uint8"]

#: The x86 flags of an int8 dot product summed in 32 bits (Cascade Lake, Zen 4, Alder Lake).
_VNNI = frozenset({"avx512_vnni", "avx_vnni"})


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them; none elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def int8_weights(flags: frozenset[str]) -> Int8Weights:
    """The weights an int8 export should have on a CPU with ``flags``: int8 with VNNI (the
    fastest pairing there), uint8 elsewhere (about float32's speed on an AVX2-only CPU: it
    saves size, not time, but answers like float32)."""
    return "int8" if flags & _VNNI else "uint8"


def saturates_int8_weights(flags: frozenset[str]) -> bool:
    """Whether ONNX Runtime's kernels can saturate an int8-weight model on this x86 CPU (an
    x86 CPU without VNNI; other CPUs list no x86 flags and are not judged)."""
    return "avx2" in flags and not flags & _VNNI
