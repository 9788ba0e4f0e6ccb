"""``worker.stages.runner``: a file run in this process, and what its summary says."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory import described, make_model
from worker.models import load_model
from worker.stages.runner import run_file
from worker.testing import decode, make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("io") / "clip.mp4", frames=9, width=96, height=64)


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


def test_stage_threads_carry_their_names_to_the_os() -> None:
    # top -H, py-spy and benchmarks/thread_profile.py tell the stages apart by these names
    # (and x264's threads, started from the writer's, inherit its name).
    import threading

    from worker.stages.threads import Threads

    seen: list[str] = []
    threads = Threads(threading.Event())
    threads.add("inference", lambda: seen.append(Path("/proc/thread-self/comm").read_text()))
    threads.start()
    threads.wait()
    assert seen == ["worker-inferenc\n"]  # the OS keeps 15 bytes
