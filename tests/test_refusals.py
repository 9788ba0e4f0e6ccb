"""What the second hostile campaign (issue 19) found the command accepting, or refusing in a
validation library's words: each case is the campaign's own command line, refused now with one
plain ``error:`` line (exit 2, no traceback) and nothing written, and no file clobbered.

Items: 6 (paths of a run against each other), 7 (degenerate zones), 8 (list settings from the
environment), 11 (events with nowhere to go, malformed webhooks), 12 (messages and exit codes).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from factory import make_model
from worker.settings import load_settings
from worker.testing import RedisServer, clean_env, make_video, one_error, worker_cli

#: Nothing listens here: a command that reaches Redis says so instead of what we test.
DEAD_REDIS = "redis://127.0.0.1:1"


@dataclass
class Case:
    args: list[str]
    needles: list[str]
    env: dict[str, str] = field(default_factory=dict)


def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes: nothing added, nothing changed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _clip(tmp: Path) -> None:
    make_video(tmp / "clip.mp4", frames=4)


def _classifier(tmp: Path) -> None:
    _clip(tmp)
    make_model(tmp / "cls.onnx", output="classify_softmax", classes=3)


RUN = ["run", "--input", "clip.mp4"]
WATCH = ["--watch", "background>0.1"]


def _events_is_the_input(tmp: Path) -> Case:
    # Before: exit 0, the events' JSON appended to the source video.
    _clip(tmp)
    return Case([*RUN, *WATCH, "--events", "clip.mp4"], ["events 'clip.mp4'", "the input"])


def _events_is_the_results(tmp: Path) -> Case:
    # Before: the results file overwritten by the results, the events in it lost.
    _clip(tmp)
    return Case(
        [*RUN, *WATCH, "--results", "o.jsonl", "--events", "o.jsonl"],
        ["events 'o.jsonl'", "same path as the results"],
    )


def _events_is_the_output(tmp: Path) -> Case:
    _clip(tmp)
    return Case(
        [*RUN, *WATCH, "--output", "o.mp4", "--events", "o.mp4"],
        ["events 'o.mp4'", "same path as the output video"],
    )


def _edge_zone_on_a_classifier(tmp: Path) -> Case:
    # Before: ZeroDivisionError at the first frame, exit 1.
    _classifier(tmp)
    return Case(
        [*RUN, "--model", "cls.onnx", "--zone", "right=1,0 1,1 1,0.5"],
        ["zone 'right'", "no area"],
    )


def _watch_with_nowhere_for_events(tmp: Path) -> Case:
    # Before: exit 0, events counted in the summary and written nowhere.
    _clip(tmp)
    return Case(
        [*RUN, *WATCH, "--output", "none", "--results", "-"],
        ["--watch", "nowhere", "--events FILE"],
    )


def _webhook_unclosed_bracket(tmp: Path) -> Case:
    # Before: accepted; every event lost at run time.
    _clip(tmp)
    return Case([*RUN, *WATCH, "--webhook", "http://[::1"], ["--webhook", "not a valid URL"])


def _webhook_port_out_of_range(tmp: Path) -> Case:
    _clip(tmp)
    return Case(
        [*RUN, *WATCH, "--webhook", "http://127.0.0.1:99999/"], ["--webhook", "Port out of range"]
    )


def _masks_on_a_classifier(tmp: Path) -> Case:
    # Before: exit 0, --masks silently ignored.
    _classifier(tmp)
    return Case([*RUN, "--model", "cls.onnx", "--masks", "m"], ["--masks", "classifier"])


def _line_without_objects(tmp: Path) -> Case:
    # A line on a plain segmenter would count nothing, silently.
    _clip(tmp)
    return Case([*RUN, "--line", "gate=0,0.5 1,0.5"], ["--line", "without --regions"])


def _model_path_is_a_folder(tmp: Path) -> Case:
    # Before: "no such file" for a folder that is there.
    _clip(tmp)
    (tmp / "models" / "d" / "model.onnx").mkdir(parents=True)
    return Case([*RUN, "--model", "d"], ["model 'd'", "'models/d/model.onnx' is a folder"])


def _pipeline_nested_thousands_deep(tmp: Path) -> Case:
    # Before: "unexpected RecursionError", exit 1.
    (tmp / "p.toml").write_text("card_overrides = " + "[" * 5000 + "]" * 5000 + "\n")
    return Case(["run", "--pipeline", "p.toml"], ["'p.toml'", "nested too deeply"])


def _card_nested_thousands_deep(tmp: Path) -> Case:
    _clip(tmp)
    (tmp / "card.json").write_text('{"mean": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return Case([*RUN, "--card", "card.json"], ["'card.json'", "nested too deeply"])


def _card_mean_nan(tmp: Path) -> Case:
    # Before: "expected 3 values" for a list of three.
    _clip(tmp)
    (tmp / "card.json").write_text('{"mean": [NaN, 0, 0]}')
    return Case([*RUN, "--card", "card.json"], ["mean (value 1)", "finite number", "nan"])


def _misspelt_key_in_a_watch_table(tmp: Path) -> Case:
    # Before: "expected text" about the rule, the misspelt field never named.
    _clip(tmp)
    (tmp / "p.toml").write_text('[[watch]]\nlabel = "sky"\nabov = 0.3\n')
    return Case(
        [*RUN, "--pipeline", "p.toml"],
        ["'p.toml'", "key 'watch' (value 1)", "unknown key 'abov'", "did you mean 'above'"],
    )


def _jobs_limit_past_any_integer(tmp: Path) -> Case:
    # Before: "unexpected" error and exit 1 (a Redis reply too large).
    return Case(
        ["jobs", "--limit", "99999999999999999999"],
        ["--limit 99999999999999999999", "1 to 10000"],
        {"WORKER_REDIS_URL": DEAD_REDIS},
    )


def _submit(*args: str) -> Callable[[Path], list[str]]:
    def args_in(tmp: Path) -> list[str]:
        _clip(tmp)
        return ["submit", "--input", "clip.mp4", *args]

    return args_in


def _submit_case(*args: str, needles: list[str]) -> Callable[[Path], Case]:
    def case(tmp: Path) -> Case:
        return Case(_submit(*args)(tmp), needles, {"WORKER_REDIS_URL": DEAD_REDIS})

    return case


def _submit_non_utf8_name(tmp: Path) -> Case:
    # Before: a UnicodeEncodeError in the validation library's words.
    name = os.fsdecode(b"bad\xff.mp4")
    make_video(tmp / name, frames=2)
    return Case(
        ["submit", "--input", name], ["--input", "not UTF-8"], {"WORKER_REDIS_URL": DEAD_REDIS}
    )


def _submit_masks_folder(tmp: Path) -> Case:
    _clip(tmp)
    (tmp / "p.toml").write_text('input = "clip.mp4"\nmasks = "folder"\n')
    return Case(
        ["submit", "--pipeline", "p.toml"],
        ["masks 'folder'", "expected 'png' or 'rle'"],
        {"WORKER_REDIS_URL": DEAD_REDIS},
    )


def _submit_url_with_a_password(tmp: Path) -> Case:
    # Before: the refusal printed the password (item 2).
    return Case(
        ["submit", "--input", "http://user:s3cr3t@example.com/x.mp4"],
        ["http://***@example.com/x.mp4", "not allowed"],
        {"WORKER_REDIS_URL": DEAD_REDIS},
    )


BAD: dict[str, Callable[[Path], Case]] = {
    "--events is the input": _events_is_the_input,
    "--events is the results": _events_is_the_results,
    "--events is the output video": _events_is_the_output,
    "classifier zone of no width at the edge": _edge_zone_on_a_classifier,
    "--watch with nowhere for events": _watch_with_nowhere_for_events,
    "--webhook http://[::1": _webhook_unclosed_bracket,
    "--webhook port 99999": _webhook_port_out_of_range,
    "--masks on a classifier": _masks_on_a_classifier,
    "model path is a folder": _model_path_is_a_folder,
    "--line on a segmenter without --regions": _line_without_objects,
    "pipeline nested thousands deep": _pipeline_nested_thousands_deep,
    "card nested thousands deep": _card_nested_thousands_deep,
    "card mean NaN": _card_mean_nan,
    "[[watch]] with a misspelt key": _misspelt_key_in_a_watch_table,
    "jobs --limit 10^20": _jobs_limit_past_any_integer,
    "submit --deadline nan": _submit_case(
        "--deadline", "nan", needles=["--deadline nan", "positive number"]
    ),
    "submit --max-frames -5": _submit_case(
        "--max-frames", "-5", needles=["--max-frames", "at least 1", "-5"]
    ),
    "submit --max-frames 0": _submit_case(
        "--max-frames", "0", needles=["--max-frames", "at least 1", "got 0"]
    ),
    "submit --key of 300 characters": _submit_case(
        "--key", "k" * 300, needles=["--key", "at most 200 characters"]
    ),
    "submit a non-UTF-8 file name": _submit_non_utf8_name,
    "submit masks = <folder>": _submit_masks_folder,
    "submit a URL with a password": _submit_url_with_a_password,
}


@pytest.mark.parametrize("name", list(BAD))
def test_refused_in_one_plain_line_and_nothing_written_or_changed(
    tmp_path: Path, name: str
) -> None:
    case = BAD[name](tmp_path)
    before = files(tmp_path)
    proc = worker_cli(tmp_path, *case.args, env=clean_env(case.env))
    line = one_error(proc, *case.needles)
    assert "Traceback" not in line and "validation error" not in line
    assert "s3cr3t" not in proc.stderr
    assert files(tmp_path) == before


def test_an_http_input_in_a_pipeline_file_is_submitted_where_the_schemes_allow_it(
    tmp_path: Path,
) -> None:
    # Before: refused as "'worker run' reads video files" whatever WORKER_URL_SCHEMES said.
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        (tmp_path / "p.toml").write_text('input = "http://127.0.0.1:9/x.mp4"\n')
        env = {"WORKER_REDIS_URL": server.url, "WORKER_URL_SCHEMES": "file,http"}
        proc = worker_cli(tmp_path, "submit", "--pipeline", "p.toml", env=clean_env(env))
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.strip()) == 32  # the job's id
        # Without http allowed, the same file is refused, naming the setting to change.
        proc = worker_cli(
            tmp_path, "submit", "--pipeline", "p.toml",
            env=clean_env({"WORKER_REDIS_URL": server.url}),
        )  # fmt: skip
        one_error(proc, "'http'", "WORKER_URL_SCHEMES")
    finally:
        server.kill()


# ----------------------------------------------------------------------- lists from the env


def test_list_settings_from_the_environment_in_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: two tracebacks and exit 1 on every command, for each of these.
    monkeypatch.setenv("WORKER_WATCH", "sky>0.1")
    monkeypatch.setenv("WORKER_URL_SCHEMES", "http,file")
    s = load_settings()
    assert [str(w) for w in s.watch] == ["sky>0.1"] and s.url_schemes == ("http", "file")
    monkeypatch.setenv("WORKER_WATCH", "sky>0.1, robot>0.02@3")
    assert len(load_settings().watch) == 2
    monkeypatch.setenv("WORKER_WATCH", json.dumps([{"label": "sky", "above": 0.1}]))
    assert len(load_settings().watch) == 1


@pytest.mark.parametrize(
    ("name", "value", "example"),
    [
        ("ZONES", "door=0,0 1,0 1,1", '"points"'),
        ("CAMERAS", "door=rtsp://host/s", '{"door": "rtsp://host/stream"}'),
        ("CARD_OVERRIDES", "threshold=0.3", '{"threshold": 0.4}'),
    ],
)
def test_other_settings_from_the_environment_name_the_json_expected(
    tmp_path: Path, name: str, value: str, example: str
) -> None:
    _clip(tmp_path)
    proc = worker_cli(tmp_path, *RUN, env=clean_env({f"WORKER_{name}": value}))
    one_error(proc, f"WORKER_{name}", "expected JSON", example)
