"""Decode and encode on the hardware where it exists, in software where it does not.

This machine's FFmpeg lists CUDA (compiled in) but has no GPU: "auto" must fall back
silently and give exactly the frames software decoding gives; asking for the hardware
outright must fail with a reason. On a machine with NVDEC/NVENC the same tests check that the
hardware path gives the same frames (H.264 decoding is bit-exact by the standard).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from factory import described, make_model
from worker.description import Encode
from worker.errors import InputError, OutputError
from worker.models import load_model
from worker.stages.atomic import AtomicFile
from worker.stages.frames import Frame
from worker.stages.runner import run_file
from worker.stages.source import VideoSource, decode_threads
from worker.stages.writer import VideoWriter, nvenc_unavailable
from worker.testing import decode, make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("io") / "clip.mp4", frames=9, width=96, height=64)


def frames_of(source: VideoSource) -> list[np.ndarray[Any, Any]]:
    try:
        return [f.image for f in source.frames()]
    finally:
        source.close()


def test_auto_hardware_decode_gives_the_software_frames(
    clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    software = frames_of(VideoSource(clip, hw_decode="off"))
    with caplog.at_level(logging.WARNING):
        auto = VideoSource(clip, hw_decode="auto")
    assert not caplog.records  # falling back is not worth a warning
    assert auto.decoder in ("cuda", "software")
    if auto.decoder == "software":
        assert auto.hw_unavailable  # says why it is not on the GPU
    got = frames_of(auto)
    assert len(got) == len(software) == 9
    for a, b in zip(got, software, strict=True):
        np.testing.assert_array_equal(a, b)


def test_required_hardware_decode_fails_with_the_reason_where_absent(clip: Path) -> None:
    probe = VideoSource(clip, hw_decode="auto")
    probe.close()
    if probe.decoder == "cuda":
        pytest.skip("this machine decodes on the GPU")
    with pytest.raises(InputError, match=r"hardware decoding \(cuda\) is not available"):
        VideoSource(clip, hw_decode="cuda")


def test_a_missing_file_is_still_reported_as_missing_with_hardware_decode(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="file not found"):
        VideoSource(tmp_path / "nope.mp4", hw_decode="auto")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="not a readable video"):
        VideoSource(garbage, hw_decode="auto")


def test_decoder_threads_follow_the_machine(clip: Path) -> None:
    source = VideoSource(clip, threads=0)
    try:
        assert source.stream.codec_context.thread_count == decode_threads()
        assert decode_threads() >= 1 and decode_threads(3) == 3
    finally:
        source.close()


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


def test_a_run_reports_what_decoded_encoded_and_crossed(clip: Path, tmp_path: Path) -> None:
    model = load_model(make_model(tmp_path / "m.onnx", stride=2), provider="cpu")
    summary = run_file(
        clip,
        model,
        described(batch=4, hw_decode="auto", encoder="auto"),
        output=tmp_path / "o.mp4",
        results=tmp_path / "o.jsonl",
    )
    p = summary.pipeline
    assert summary.frames == 9
    assert p["fused"] is True and p["device"] == "cpu" and p["io_binding"] is True
    assert p["decoder"] in ("cuda", "software") and p["encoder"] in ("libx264", "h264_nvenc")
    # 9 frames in batches of 4: 32x32x3 uint8 in, a 16x16 uint8 mask out, per frame.
    assert p["device_bytes_per_frame"] == {"in": 32 * 32 * 3, "out": 16 * 16}
    assert len(decode(tmp_path / "o.mp4")) == 9


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
