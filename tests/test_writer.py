"""``worker.stages.writer``: encoding on the hardware where it exists (NVENC), in software
where it does not, timestamps kept.

This machine's FFmpeg lists NVENC (compiled in) but has no GPU: "auto" must fall back
silently to libx264; asking for NVENC outright must fail with a reason.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from worker.description import Encode
from worker.errors import OutputError
from worker.stages.atomic import AtomicFile
from worker.stages.frames import Frame
from worker.stages.source import VideoSource
from worker.stages.writer import VideoWriter, nvenc_unavailable
from worker.testing import decode, make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("io") / "clip.mp4", frames=9, width=96, height=64)


def test_auto_encoder_falls_back_to_libx264(clip: Path, tmp_path: Path) -> None:
    source = VideoSource(clip)
    try:
        target = AtomicFile(tmp_path / "out.mp4", "output")
        writer = VideoWriter(target, source.info, Encode(crf=18, encoder="auto"))
        assert writer.codec == ("h264_nvenc" if nvenc_unavailable() is None else "libx264")
        images = [f for f in source.frames()]
        for f in images:
            writer.write(f, f.image)
        writer.close()
        target.commit()
    finally:
        source.close()
    out = decode(tmp_path / "out.mp4")
    assert len(out) == len(images)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    # The BGR -> I420 conversion keeps colours: the encoded frames look like the input.
    err = [np.abs(a.astype(int) - f.image).mean() for (_, a), f in zip(out, images, strict=True)]
    assert max(err) < 4


def test_required_nvenc_fails_with_the_reason_where_absent(clip: Path, tmp_path: Path) -> None:
    if nvenc_unavailable() is None:
        pytest.skip("this machine has NVENC")
    source = VideoSource(clip)
    try:
        with pytest.raises(OutputError, match="h264_nvenc"):
            VideoWriter(
                AtomicFile(tmp_path / "o.mp4", "output"), source.info, Encode(encoder="h264_nvenc")
            )
    finally:
        source.close()


def test_frames_keep_their_timing_through_the_writer(clip: Path, tmp_path: Path) -> None:
    source = VideoSource(clip)
    target = AtomicFile(tmp_path / "t.mp4", "output")
    writer = VideoWriter(target, source.info, Encode(crf=18, encoder="libx264"))
    try:
        frames: list[Frame] = list(source.frames())
        for f in frames:
            writer.write(f, f.image)
        writer.close()
        target.commit()
    finally:
        source.close()
    times = [t for t, _ in decode(tmp_path / "t.mp4")]
    assert times == pytest.approx([f.time for f in frames], abs=1e-3)
