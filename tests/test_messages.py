"""What a user reads when something is wrong, and models whose cards were refused or drawn
invisibly (issue 12): each case through the real CLI, with real files.

Rules: usage errors exit 2 with one plain line, checked before anything heavy runs; no
validation library's jargon; URLs are named as given (and redacted); singular and plural
agree; a one-channel multi-label map is one label; no painted class is black by default;
ONNX Runtime's telemetry warning never reaches stderr.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from factory import make_model
from worker.errors import ModelError
from worker.live.camera import Camera, redact
from worker.messages import plural
from worker.models import load_model, read_graph
from worker.testing import clean_env, make_video, one_error, worker_cli


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return worker_cli(cwd, *args, env=clean_env(env))


def one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """``one_error``, in plain words: none of pydantic's jargon."""
    line = one_error(proc, *needles, quiet=False)
    for jargon in ("Field required", "Extra inputs", "Input should", "Value error", "\\x"):
        assert jargon not in line, line
    return line


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mp4", frames=6)


def test_dotenv_that_is_not_utf8(tmp_path: Path, clip: Path) -> None:
    (tmp_path / ".env").write_bytes(b"WORKER_ALPHA=0.3\n# caf\xe9\n")
    one_line(run(tmp_path, "run", "--input", "clip.mp4"), "'.env'", "not UTF-8", "0xe9")


def test_a_bad_preset_is_a_usage_error_before_the_model_loads(tmp_path: Path, clip: Path) -> None:
    # Before: a writer-stage failure (exit 1) after the model had loaded.
    said = one_line(
        run(tmp_path, "run", "--input", "clip.mp4", "--preset", "fastest", "--model", "x.onnx"),
        "--preset",
        "'veryfast'",
    )
    assert "x.onnx" not in said


def test_the_input_is_checked_before_the_model(tmp_path: Path) -> None:
    one_line(run(tmp_path, "run", "--input", "gone.mp4", "--model", "also-gone.onnx"),
             "'gone.mp4'", "not found")  # fmt: skip


@pytest.mark.parametrize(
    ("card", "needles"),
    [
        ({"mean": [0.5, 0.5]}, ["mean: expected 3 values, got 2"]),
        ({"colour_order": "bgr"}, ["unknown key 'colour_order' (did you mean 'color_order'?)"]),
        ({"resize": "squash"}, ["resize: expected 'stretch', 'letterbox' or 'center_crop'"]),
        ({"threshold": 2}, ["threshold: expected a number below 1.0, got 2"]),
    ],
)
def test_card_errors_in_plain_words(
    tmp_path: Path, clip: Path, card: dict[str, object], needles: list[str]
) -> None:
    make_model(tmp_path / "m.onnx", card=card)
    one_line(run(tmp_path, "run", "--input", "clip.mp4", "--model", "m.onnx"), *needles)


def test_nan_is_not_called_too_large(tmp_path: Path, clip: Path) -> None:
    # Before: "--alpha: Input should be less than or equal to 1".
    one_line(run(tmp_path, "run", "--input", "clip.mp4", "--alpha", "nan"),
             "--alpha", "expected a number, got nan")  # fmt: skip


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        ("rtsp://admin:hunter2@10.0.0.5/stream", ["rtsp://***@10.0.0.5/stream", "worker monitor"]),
        ("http://127.0.0.1:8000/clip.mp4", ["http://127.0.0.1:8000/clip.mp4", "worker submit"]),
    ],
)
def test_urls_given_to_run_are_named_as_given(tmp_path: Path, url: str, needles: list[str]) -> None:
    # Before: "input 'http:/127.0.0.1:8000/clip.mp4': file not found".
    said = one_line(run(tmp_path, "run", "--input", url), *needles)
    assert "hunter2" not in said and "not found" not in said


def test_checker_messages_are_whole(tmp_path: Path) -> None:
    g = helper.make_graph(
        [helper.make_node("NoSuchOp", ["image"], ["y"], name="mystery")],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelError) as e:
        read_graph(path)
    # The context after the first line says which node: kept, on the same line.
    assert "NoSuchOp" in str(e.value) and "mystery" in str(e.value)
    assert "\n" not in str(e.value)


def test_singular_and_plural() -> None:
    assert plural(1, "undecodable packet") == "1 undecodable packet"
    assert plural(3, "undecodable packet") == "3 undecodable packets"
    assert plural(1, "packet was", "packets were") == "1 packet was"


def test_no_telemetry_warning_when_home_is_not_writable(tmp_path: Path, clip: Path) -> None:
    # /proc/1 cannot be written, not even by root: ONNX Runtime then warned on stderr that it
    # could not persist its telemetry device id.
    proc = run(tmp_path, "run", "--input", "clip.mp4", "--quiet", env={"HOME": "/proc/1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


# ----------------------------------------------------------------------------- models


def test_one_channel_multi_label_map_is_one_label(tmp_path: Path, clip: Path) -> None:
    # Before: "card has 1 labels but the output [1, 1, 32, 32] has 2 classes".
    make_model(tmp_path / "text.onnx", output="single_sigmoid",
               card={"multi_label": True, "labels": ["text"]})  # fmt: skip
    proc = run(tmp_path, "run", "--input", "clip.mp4", "--model", "text.onnx")
    assert proc.returncode == 0, proc.stderr
    first = json.loads((tmp_path / "clip.segment.jsonl").read_text().splitlines()[0])
    assert set(first["coverage"]) <= {"text"}
    # The binary reading stays for cards that ask for it.
    make_model(tmp_path / "fg.onnx", output="single_sigmoid",
               card={"labels": ["background", "text"]})  # fmt: skip
    m = load_model(tmp_path / "fg.onnx", provider="cpu")
    assert (m.kind, m.labels) == ("binary", ("background", "text"))


def test_no_painted_class_is_black_by_default(tmp_path: Path) -> None:
    cards: list[dict[str, Any]] = [{"multi_label": True}, {"background": None}]
    for i, card in enumerate(cards):
        m = load_model(make_model(tmp_path / f"m{i}.onnx", classes=3, card=card), provider="cpu")
        painted = range(len(m.labels))
        assert all(m.colors[i].any() for i in painted), (card, m.colors[:3])
        assert len({tuple(m.colors[i]) for i in painted}) == 3  # and still told apart
    m = load_model(make_model(tmp_path / "plain.onnx", classes=3), provider="cpu")
    assert m.background == 0 and not np.asarray(m.colors[0]).any()  # unpainted: as before


URL = "rtsp://admin:hunter2@10.0.0.5:554/Streaming/101?token=abc"


def test_redact_hides_credentials_and_query_values() -> None:
    # No user, password or query value of a camera URL reaches logs, metrics or errors.
    shown = redact(URL)
    assert "hunter2" not in shown
    assert "admin" not in shown
    assert "abc" not in shown
    assert shown.startswith("rtsp://***@10.0.0.5:554/Streaming/101?token=")
    assert redact("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


def test_redact_query_values_read_as_stars() -> None:
    # Query values are shown as literal *** (as the docstring says).
    assert redact(URL).endswith("?token=***")


def test_redact_hides_bare_query_token() -> None:
    # A query without '=' (rtsp://host/s?SECRET) is a token too and must not be shown.
    assert "hunter2" not in redact("rtsp://10.0.0.5/s?hunter2")


@pytest.mark.parametrize("password", ["pa#ss", "pa/ss", "pa?ss", "p@ss", "pa:ss"])
def test_redact_hides_passwords_with_unescaped_url_characters(password: str) -> None:
    # Camera passwords hold '#', '/', '?', '@' unescaped; none may survive redaction.
    shown = redact(f"rtsp://admin:{password}@10.0.0.5:554/live")
    assert "ss" not in shown and "admin" not in shown
    assert shown == "rtsp://***@10.0.0.5:554/live"


def test_camera_shown_and_repr_hide_password() -> None:
    # A Camera printed or logged by repr never shows its URL's password.
    cam = Camera("door", URL)
    assert cam.shown == redact(URL)
    assert "hunter2" not in repr(cam)
    assert "door" in repr(cam)
