"""``worker.stages.source``: decoding damaged and unusual media (cut-off files, timestamps
that go backwards, text that FFmpeg would "play" as video), checking an input without
decoding it, and decoding on the hardware where it exists (NVDEC; "auto" falls back to
software silently, with exactly software's frames).

Every input is made here with PyAV, and each test first shows, with PyAV alone, that the file
really has the trait it is about (a half picture at the end, timestamps out of order, a
video stream rendered from text), so the test reproduces the real trigger.
"""

from __future__ import annotations

import itertools
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from factory import detailed, make_packed_avi, raw_frames
from worker.description import Encode
from worker.errors import InputError, InputNotFoundError
from worker.stages.atomic import AtomicFile
from worker.stages.frames import Frame
from worker.stages.packed import divisor_from_counts
from worker.stages.source import VideoSource, decode_threads, probe
from worker.stages.writer import VideoWriter
from worker.testing import decode, make_video, pattern, worker_cli

Array = np.ndarray[Any, Any]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("io") / "clip.mp4", frames=9, width=96, height=64)


def frames_of(source: VideoSource) -> list[np.ndarray[Any, Any]]:
    try:
        return [f.image for f in source.frames()]
    finally:
        source.close()


def read_all(path: Path, **kwargs: Any) -> tuple[VideoSource, list[Frame]]:
    source = VideoSource(path, **kwargs)
    try:
        return source, list(source.frames())
    finally:
        source.close()


def warnings(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("worker") and needle in r.getMessage()
    ]


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# ------------------------------------------------------------------------------ cut-off files


def test_half_an_mkv_says_it_ends_early(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The case: Matroska drops the torn last block silently, so half a file read as a
    # whole one of half the length (no bad packet, no warning). Its header states 2.4 s.
    full = make_video(tmp_path / "full.mkv", frames=60)
    half = cut(full, tmp_path / "half.mkv", 0.5)
    with av.open(str(half)) as c:
        assert not any(p.is_corrupt for p in c.demux(video=0))  # nothing else would tell

    caplog.set_level(logging.WARNING, logger="worker")
    source, frames = read_all(half)
    assert 0 < len(frames) < 40
    assert source.frames_expected == 60 == source.info.frames
    assert source.info.duration == pytest.approx(2.4)
    assert source.truncated
    assert source.bad_packets == 0
    [said] = warnings(caplog, "looks truncated")
    assert "half.mkv" in said and "ends early" in said
    assert f"({len(frames)} of about 60 frames decoded)" in said


@pytest.mark.parametrize(
    ("name", "codec", "options"),
    [
        ("cut.avi", "mpeg4", None),
        ("cut.mp4", "libx264", {"movflags": "+faststart"}),
        ("cut.webm", "libvpx-vp9", None),
    ],
)
def test_a_cut_file_reports_the_frames_its_header_announced(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    name: str,
    codec: str,
    options: dict[str, str] | None,
) -> None:
    # A truncated AVI lost 40 frames, and used to read as "1 undecodable packet".
    suffix = Path(name).suffix
    full = make_video(tmp_path / f"full{suffix}", frames=60, codec=codec, container_options=options)
    damaged = cut(full, tmp_path / name, 0.75)
    caplog.set_level(logging.WARNING, logger="worker")
    source, frames = read_all(damaged)
    assert 0 < len(frames) < 55
    assert source.frames_expected == 60
    assert source.truncated
    [said] = warnings(caplog, "looks truncated")
    assert name in said and f"{len(frames)} of" in said and "60 frames" in said


def test_a_cut_mpeg_ts_drops_its_half_last_picture(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # MPEG-TS states no length, and its last PES packet reads "whole" up to the cut: the
    # decoder patches the missing rows from the previous picture and flags the frame corrupt.
    full = make_video(tmp_path / "full.ts", frames=30, width=160, height=120, image=detailed)
    with av.open(str(full)) as c:
        starts = [p.pos for p in c.demux(video=0) if p.size and p.pos is not None]
    k = 20
    (tmp_path / "cut.ts").write_bytes(full.read_bytes()[: (starts[k] + starts[k + 1]) // 2])
    raw = raw_frames(tmp_path / "cut.ts")
    assert len(raw) == k + 1 and raw[-1][2] and not any(bad for _, _, bad in raw[:-1])
    whole = [image for _, image in decode(full)]
    assert np.abs(decode(tmp_path / "cut.ts")[k][1].astype(int) - whole[k]).mean() > 4

    caplog.set_level(logging.WARNING, logger="worker")
    source, frames = read_all(tmp_path / "cut.ts")
    assert len(frames) == k  # the patched-up picture is not passed on
    assert source.damaged_frames == 1 and source.bad_packets == 1
    assert source.frames_expected is None
    assert source.truncated
    for f in frames:  # the same bits up to the cut: the same pictures
        assert np.array_equal(f.image, whole[f.index])
    [said] = warnings(caplog, "looks truncated")
    assert "cut.ts" in said and "last frame is cut off or damaged (20 good frames" in said
    assert len(warnings(caplog, "undecodable")) == 1


@pytest.mark.parametrize("name", ["whole.mkv", "whole.mp4", "whole.avi", "whole.ts", "vfr.mkv"])
def test_whole_files_are_not_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    kwargs: dict[str, Any] = {"codec": "mpeg4"} if name.endswith(".avi") else {}
    if name == "vfr.mkv":
        # Variable frame rate: far fewer frames than the stated length at the rate it starts
        # with, yet whole.
        kwargs = {"pts": [0, 40, 80, 400, 440, 900, 940, 1900], "time_base": Fraction(1, 1000)}
    video = make_video(tmp_path / name, frames=len(kwargs.get("pts", range(30))), **kwargs)
    caplog.set_level(logging.WARNING, logger="worker")
    source, frames = read_all(video)
    assert len(frames) == source.frames_read > 0
    assert not source.truncated
    assert source.bad_packets == 0 and source.timestamps_fixed == 0
    assert warnings(caplog, "") == []
    if name.endswith((".mp4", ".avi")):
        assert source.frames_expected == len(frames)
    elif name.endswith(".ts"):
        assert source.frames_expected is None  # FFmpeg's duration is an estimate there


@pytest.mark.parametrize("dropped", [1, 2])
def test_a_length_off_by_a_frame_or_two_is_not_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, dropped: int
) -> None:
    # Capture tools write an empty AVI chunk for a frame they dropped: the header counts it,
    # FFmpeg skips it. Up to two frames short of the stated length is within the slack.
    src = make_video(tmp_path / "src.avi", frames=20, codec="mpeg4")
    with av.open(str(src)) as i, av.open(str(tmp_path / "drops.avi"), mode="w") as o:
        s: Any = o.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt, s.time_base = 64, 48, "yuv420p", Fraction(1, 25)
        packets = [bytes(p) for p in i.demux(video=0) if p.size]
        for k, data in enumerate(packets + [b""] * dropped):
            p = av.Packet(data)
            p.stream, p.pts, p.dts, p.time_base = s, k, k, Fraction(1, 25)
            p.is_keyframe = k == 0
            o.mux(p)
    caplog.set_level(logging.WARNING, logger="worker")
    source, frames = read_all(tmp_path / "drops.avi")
    assert source.frames_expected == 20 + dropped and len(frames) == 20
    assert not source.truncated
    assert warnings(caplog, "looks truncated") == []


def test_max_frames_is_not_a_truncation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    half = cut(make_video(tmp_path / "full.mkv", frames=60), tmp_path / "half.mkv", 0.5)
    caplog.set_level(logging.WARNING, logger="worker")
    source, frames = read_all(half, max_frames=5)
    assert len(frames) == 5 and not source.truncated
    assert warnings(caplog, "looks truncated") == []


# --------------------------------------------------------------------- timestamps going back


def test_packed_b_frames_in_avi_get_increasing_times_at_the_regular_rate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    video = make_packed_avi(tmp_path / "divx.avi", frames=30)
    raw = [pts for pts, _, _ in raw_frames(video) if pts is not None]
    assert len(raw) == 30
    assert any(b <= a for a, b in itertools.pairwise(raw))  # the real trigger

    caplog.set_level(logging.WARNING, logger="worker")
    source, frames = read_all(video)
    assert len(frames) == 30
    first = frames[0].pts
    assert first is not None
    # Display order, one frame interval (1/25 s, one tick of the AVI time base) apart.
    assert [f.pts for f in frames] == list(range(first, first + 30))
    assert [f.time for f in frames] == pytest.approx([(first + i) / 25 for i in range(30)])
    assert source.timestamps_fixed > 0
    for i, f in enumerate(frames):  # the pictures themselves were in order all along
        assert np.abs(f.image.astype(int) - pattern(i, 64, 48)).mean() < 8
    assert len(warnings(caplog, "go backwards or repeat")) == 1


def test_packed_b_frames_encode_to_an_output_at_the_regular_rate(tmp_path: Path) -> None:
    # The writer copies each frame's pts into the output (and only patches a non-increasing
    # one by a single tick): the source's times are what the output plays at.
    source = VideoSource(make_packed_avi(tmp_path / "divx.avi", frames=20))
    try:
        target = AtomicFile(tmp_path / "out.mp4", "output")
        writer = VideoWriter(target, source.info, Encode(crf=18, encoder="libx264"))
        for f in source.frames():
            writer.write(f, f.image)
        writer.close()
        target.commit()
    finally:
        source.close()
    times = [t for t, _ in decode(tmp_path / "out.mp4")]
    assert len(times) == 20
    assert np.diff(times) == pytest.approx([0.04] * 19, abs=1e-3)


def test_packed_avi_stating_twice_the_rate_is_timed_at_the_real_rate(tmp_path: Path) -> None:
    # Issue 19 item 9. Before: times 0.02, 0.06, 0.12, 0.14, ... (the chunks' own), the
    # header's 60 frames expected of the 30 that decode (a job's progress stopped at 50%),
    # and an output written at 50 fps that played twice as fast.
    video = make_packed_avi(tmp_path / "cam.avi", frames=30, doubled=True)
    with av.open(str(video)) as c:  # the real trigger: what the header states
        stated = c.streams.video[0]
        assert (stated.frames, stated.average_rate) == (60, Fraction(50))
    assert len(raw_frames(video)) == 30
    source, frames = read_all(video)
    assert len(frames) == 30
    assert (source.frames_expected, source.info.rate) == (30, Fraction(25))
    assert np.diff([f.time for f in frames]) == pytest.approx([0.04] * 29)
    assert not source.truncated
    # In display order. (The B-frames come out softer than in the ordinary packed file: this
    # factory's extra N-VOPs carry no time, which direct-mode prediction reads distances from.)
    for i, f in enumerate(frames):
        assert np.abs(f.image.astype(int) - pattern(i, 64, 48)).mean() < 10
    # The ordinary packed file is taken as stated.
    plain, _ = read_all(make_packed_avi(tmp_path / "divx.avi", frames=30))
    assert (plain.frames_expected, plain.info.rate, plain.info.by_count) == (
        30,
        Fraction(25),
        False,
    )


def test_one_frame_for_two_chunks_is_what_halves_the_rate() -> None:
    assert divisor_from_counts(96, 47) == 2  # doubled: the decoder still holds a frame or two
    assert divisor_from_counts(96, 95) == 1  # packed as usual, or not packed
    assert divisor_from_counts(10, 5) == 1  # too few chunks to tell: as stated
    assert divisor_from_counts(96, 0) == 1  # nothing decodes: the source says so, not this


def test_variable_frame_rate_times_are_kept_as_they_are(tmp_path: Path) -> None:
    # Only times that go backwards or repeat are replaced; uneven ones are the input's timing.
    pts = [0, 40, 50, 130, 300, 310, 500, 517]
    video = make_video(tmp_path / "vfr.mkv", frames=len(pts), pts=pts, time_base=Fraction(1, 1000))
    source, frames = read_all(video)
    assert [f.pts for f in frames] == pts
    assert [f.time for f in frames] == pytest.approx([p / 1000 for p in pts])
    assert source.timestamps_fixed == 0


def test_streams_without_timestamps_are_timed_by_the_rate(tmp_path: Path) -> None:
    # A raw H.264 stream carries no timestamps at all: frames are timed at its rate, silently.
    video = make_video(tmp_path / "raw.h264", frames=10, container_format="h264")
    assert {pts for pts, _, _ in raw_frames(video)} == {None}
    source, frames = read_all(video)
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(10)])
    assert source.timestamps_fixed == 0


# ------------------------------------------------------------------------- not video at all


def write_notes(path: Path) -> Path:
    # A few kB: short text is rejected by FFmpeg's probe already; longer text is read as tty.
    lines = [f"- item {i}: the schedule, the budget and who does what next week" for i in range(60)]
    path.write_text("Meeting notes\n=============\n\n" + "\n".join(lines) + "\n")
    return path


def test_a_text_file_is_not_a_video(tmp_path: Path) -> None:
    notes = write_notes(tmp_path / "notes.txt")
    with av.open(str(notes)) as c:  # FFmpeg on its own renders it as video frames
        assert c.format.name == "tty" and c.streams.video[0].codec_context.name == "ansi"
    want = "input '.*notes.txt': FFmpeg reads it as 'tty' \\(text\\), not a video"
    with pytest.raises(InputError, match=want):
        VideoSource(notes)
    with pytest.raises(InputError, match=want):
        probe(notes)


def test_text_art_is_not_a_video(tmp_path: Path) -> None:
    # XBIN: a header, then character/attribute pairs FFmpeg renders with its bintext decoder.
    art = tmp_path / "logo.xb"
    art.write_bytes(b"XBIN\x1a" + bytes([80, 0, 25, 0, 16, 0]) + bytes(range(256)) * 16)
    with av.open(str(art)) as c:
        assert c.format.name == "xbin" and c.streams.video
    with pytest.raises(InputError, match="FFmpeg reads it as 'xbin' \\(text art\\), not a video"):
        VideoSource(art)


def test_pictures_and_animations_still_open(tmp_path: Path) -> None:
    # The refusal is by demuxer: image files and GIFs are FFmpeg's image demuxers, not text.
    png = tmp_path / "still.png"
    assert cv2.imwrite(str(png), pattern(0, 64, 48))
    gif = make_video(tmp_path / "moving.gif", frames=5, codec="gif", pix_fmt="rgb8")
    for path, count in ((png, 1), (gif, 5)):
        info = probe(path)
        assert (info.width, info.height) == (64, 48)
        _, frames = read_all(path)
        assert len(frames) == count


# -------------------------------------------------------------------------- checking first


def test_probe_finds_what_the_source_finds(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=12)
    info = probe(video)
    source = VideoSource(video)
    source.close()
    assert info == source.info
    assert (info.width, info.height, info.frames, info.format) == (64, 48, 12, source.info.format)
    assert info.format is not None and "mp4" in info.format


def test_probe_refuses_what_the_source_refuses(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"'.*missing.mp4': file not found"):
        probe(tmp_path / "missing.mp4")
    with av.open(str(tmp_path / "tone.wav"), mode="w") as c:
        s: Any = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
    with pytest.raises(InputError, match=r"'.*tone.wav': no video stream \(found streams: audio"):
        probe(tmp_path / "tone.wav")


def test_the_run_summary_says_what_the_file_lost(tmp_path: Path) -> None:
    # Through the real command: before, a half MKV read as a whole one of half the length.
    import json

    half = cut(make_video(tmp_path / "full.mkv", frames=60), tmp_path / "half.mkv", 0.5)
    proc = worker_cli(tmp_path, "run", "--input", str(half), "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["frames_expected"] == 60 and summary["truncated"] is True
    assert 0 < summary["frames"] < 40 and summary["bad_packets"] == 0
    assert proc.stderr.count("looks truncated") == 1


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
