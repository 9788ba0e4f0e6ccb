"""Pipeline files: one TOML file for a whole job or camera setup, read as a settings source.

Rules: CLI > environment > pipeline file > .env > defaults; an unknown key, a wrong type or a
missing environment reference is one ``error:`` line naming the file and the key (exit 2);
credentials only by reference (``${VAR}``); the shipped examples in ``pipelines/`` run as
they are.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from factory import make_model
from worker.cli.common import configured_model
from worker.errors import CardError, SettingsError
from worker.settings import load_settings
from worker.testing import clean_env, one_error, worker_cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "pipelines"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return worker_cli(cwd, *args, env=clean_env(env), timeout=180)


# ----------------------------------------------------------------------------- precedence


def test_precedence_cli_env_file_dotenv_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(Path("p.toml"), "alpha = 0.3\nbatch = 3\ncrf = 30\ntop_k = 2\n")
    Path(".env").write_text("WORKER_ALPHA=0.9\nWORKER_CRF=40\nWORKER_PRESET=veryfast\n")
    s = load_settings(f)
    # The file beats .env (alpha, crf); .env still fills what the file leaves (preset).
    assert (s.alpha, s.batch, s.crf, s.preset, s.top_k) == (0.3, 3, 30, "veryfast", 2)
    monkeypatch.setenv("WORKER_BATCH", "5")
    s = load_settings(f, alpha=0.1)
    assert (s.alpha, s.batch) == (0.1, 5)  # the flag beats the file, the environment too
    assert s.pipeline == f
    assert load_settings().crf == 40 and load_settings().pipeline is None


def test_tables_cameras_and_card_with_environment_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOOR_PASSWORD", "s3cret/#?")
    f = write(
        Path("p.toml"),
        'model = "demo-segment"\n'
        "[card]\nthreshold = 0.4\n"
        "[cameras]\n"
        'door = "rtsp://admin:${DOOR_PASSWORD}@10.0.0.5/stream"\n'
        'yard = "rtsp://${YARD_HOST:-10.0.0.6}/stream"\n'
        'lit = "rtsp://10.0.0.7/$${not-a-reference}"\n',
    )
    s = load_settings(f)
    urls = {k: v.get_secret_value() for k, v in s.cameras.items()}
    assert urls == {
        "door": "rtsp://admin:s3cret/#?@10.0.0.5/stream",
        "yard": "rtsp://10.0.0.6/stream",
        "lit": "rtsp://10.0.0.7/${not-a-reference}",
    }
    assert "s3cret" not in repr(s)
    assert s.card_overrides == {"threshold": 0.4}


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("alhpa = 0.3\n", ["'p.toml'", "unknown key 'alhpa'", "did you mean 'alpha'"]),
        ('batch = "four"\n', ["'p.toml'", "key 'batch'", "expected a whole number", "'four'"]),
        ("alpha = 7\n", ["'p.toml'", "key 'alpha'", "at most 1"]),
        (
            '[cameras]\ndoor = "rtsp://${NOT_SET_ANYWHERE}/s"\n',
            ["'p.toml'", "key 'cameras.door'", "NOT_SET_ANYWHERE is not set"],
        ),
        (
            '[cameras]\ndoor = "rtsp://admin:hunter2@10.0.0.5/s"\n',
            ["'p.toml'", "key 'cameras.door'", "password written in the file"],
        ),
        (
            '[cameras]\ndoor = "rtsp://admin:${P:-hunter2}@10.0.0.5/s"\n',
            ["'p.toml'", "key 'cameras.door'", "password written in the file"],
        ),
        # Issue 19 item 2: every URL-valued setting, and passwords in the query too.
        (
            'webhook = "http://user:hunter2@hooks.example/e"\n',
            ["'p.toml'", "key 'webhook'", "password written in the file"],
        ),
        (
            '[cameras]\ndoor = "rtsp://10.0.0.5/s?user=admin&password=hunter2"\n',
            ["'p.toml'", "key 'cameras.door'", "'password' is written in the file"],
        ),
        (
            'redis_url = "redis://:hunter2@10.0.0.7:6379/0"\n',
            ["'p.toml'", "key 'redis_url'", "password written in the file"],
        ),
        ("alpha = \n", ["'p.toml'", "not valid TOML"]),
        ('watch = "sky>0.2"\n', ["'p.toml'", "key 'watch'", "expected a list"]),
    ],
)
def test_bad_file_is_one_plain_line_naming_file_and_key(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    write(tmp_path / "p.toml", text)
    with pytest.raises(SettingsError) as e:
        load_settings(Path("p.toml"))
    for needle in needles:
        assert needle in str(e.value), (needle, str(e.value))
    assert "hunter2" not in str(e.value)


def test_missing_file_and_the_cli_exit_code(tmp_path: Path) -> None:
    one_error(run_cli(tmp_path, "run", "--pipeline", "nope.toml"), "'nope.toml'", "no such file")
    write(tmp_path / "p.toml", "input = 'x.mp4'\nbatch = []\n")
    one_error(run_cli(tmp_path, "run", "--pipeline", "p.toml"), "'p.toml'", "key 'batch'")
    write(tmp_path / "m.toml", "colour_order = 'bgr'\n")
    one_error(run_cli(tmp_path, "monitor", "--pipeline", "m.toml"), "'m.toml'", "unknown key")
    one_error(run_cli(tmp_path, "submit", "--pipeline", "m.toml"), "'m.toml'", "unknown key")


def test_card_overrides_apply_and_a_bad_one_names_the_file(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m.onnx", classes=3)
    f = write(tmp_path / "p.toml", f"model = '{model}'\n[card]\nlabels = ['a', 'b', 'c']\n")
    m = configured_model(load_settings(f))
    assert m.labels == ("a", "b", "c")
    assert any("labels" in note for note in m.notes)
    write(f, f"model = '{model}'\n[card]\ncolour_order = 'bgr'\nmean = [0.5, 0.5]\n")
    with pytest.raises(CardError) as e:
        configured_model(load_settings(f))
    said = str(e.value)
    assert "pipeline '" in said and "[card]" in said
    assert "unknown key 'colour_order' (did you mean 'color_order'?)" in said
    assert "mean: expected 3 values" in said


# ----------------------------------------------------------------------------- examples


def test_demo_example_runs_as_it_is(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "sample", "robot.mp4", "--seconds", "1").returncode == 0
    proc = run_cli(tmp_path, "run", "--pipeline", str(EXAMPLES / "demo.toml"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["frames"] == 25
    assert Path(summary["output"]).name == "robot.demo.mp4"
    assert (tmp_path / "robot.demo.mp4").stat().st_size > 0
    records = (tmp_path / "robot.demo.jsonl").read_text().splitlines()
    assert len(records) == 25 and "robot" in json.loads(records[0])["coverage"]
    # A flag beats the file.
    proc = run_cli(
        tmp_path, "run", "--pipeline", str(EXAMPLES / "demo.toml"), "--max-frames", "3",
        "--results", "three.jsonl",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "three.jsonl").read_text().splitlines()) == 3


def test_classify_example_runs_here(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "sample", "robot.mp4", "--seconds", "1").returncode == 0
    proc = run_cli(tmp_path, "run", "--pipeline", str(EXAMPLES / "classify.toml"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "robot.classify.jsonl"
    first: dict[str, Any] = json.loads(out.read_text().splitlines()[0])
    assert len(first["top"]) == 2  # top_k from the file
    assert first["top"][0]["label"] in ("grey", "sky blue", "grass green", "robot red")


def test_every_example_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACK_PASSWORD", "x")
    examples = sorted(EXAMPLES.glob("*.toml"))
    assert len(examples) >= 3
    for example in examples:
        load_settings(example)
