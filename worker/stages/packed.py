"""AVI of MPEG-4 part 2 whose header states twice the real frame rate.

DivX/Xvid-era cameras and converters write "packed bitstream" AVI: a P-frame shares its chunk
with the B-frame after it and an empty "N-VOP" chunk keeps one chunk per frame. Some of them
also put an N-VOP after every chunk and state twice the rate in the header: 682 chunks at
50 fps for 341 frames at 25. FFmpeg decodes such a file right, but its timestamps are those of
the chunks (frames at 0.02, 0.06, 0.12, 0.14, ... s) and its frame count the header's.

No header field tells the two apart; decoding tells: the first chunks of such a file give
one frame for two. ``rate_divisor`` decodes them and says by how much the header's rate and
frame count are to be divided (1: they hold).
"""

from __future__ import annotations

from pathlib import Path

import av
import av.error

__all__ = ["SAMPLE_CHUNKS", "divisor_from_counts", "rate_divisor"]

#: Chunks decoded to judge: a few seconds' worth, a fraction of a second of CPU.
SAMPLE_CHUNKS = 96
#: Fewer chunks than this cannot show the pattern (a file of a few frames is taken as stated).
_MIN_CHUNKS = 16


def divisor_from_counts(chunks: int, frames: int) -> int:
    """2 where ``chunks`` (non-empty packets, from the first) decoded to about half as many
    ``frames``, else 1. Packed files with one N-VOP per B-frame decode one frame a chunk; the
    doubled ones, one for two (the decoder's delay of a frame or two is within the margin)."""
    if chunks < _MIN_CHUNKS or frames <= 0:
        return 1
    return 2 if frames / chunks < 0.6 else 1


def rate_divisor(path: Path, stream_index: int) -> int:
    """Decode the first ``SAMPLE_CHUNKS`` chunks of the file's video stream, in a container of
    its own (the caller's is left where it is), and judge by ``divisor_from_counts``."""
    chunks = frames = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams[stream_index]
            for packet in container.demux(stream):
                if packet.size:
                    chunks += 1
                frames += len(packet.decode())
                if chunks >= SAMPLE_CHUNKS:
                    break
    except (av.error.FFmpegError, OSError, ValueError):
        return 1  # damage is the source's to count and report, not this estimate's
    return divisor_from_counts(chunks, frames)
