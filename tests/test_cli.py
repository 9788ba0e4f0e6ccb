"""The ``worker`` command end to end, run the way a user runs it: a real subprocess.

What the command promises (``worker.cli``): exit 0 with a JSON summary on stdout; usage and
input errors exit 2 with one ``error: ...`` line on stderr and no traceback; a stage failing
at run time exits 1; Ctrl-C exits 130. Whatever the exit, nothing is half-written: no final
output and no ``*.part`` temporary is left behind.

Inputs are built here with ``factory`` (PyAV videos, onnx.helper models), tiny on purpose.
"""

from __future__ import annotations

import ast
import fcntl
import importlib
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from factory import described, make_model
from worker.errors import StageError
from worker.models import load_model
from worker.stages import run_file
from worker.testing import clean_env, decode, make_video, one_error, worker_cli

TIMEOUT_S = 60.0


# ----------------------------------------------------------------------------------- helpers


def worker(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout: float = TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """``worker *args`` with ``env`` added to a clean environment; ``prefix``: another way to
    start the command than ``python -m worker``."""
    if not prefix:
        return worker_cli(cwd, *args, env=clean_env(env), timeout=timeout)
    return subprocess.run(
        [*prefix, *args], cwd=cwd, env=clean_env(env), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def tree(root: Path) -> set[str]:
    """Every file and folder under ``root``, hidden ones included, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def part_files(root: Path) -> list[str]:
    return [name for name in tree(root) if name.endswith(".part")]


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # the summary and nothing else
    summary: dict[str, Any] = json.loads(lines[0])
    return summary


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def save_graph(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
) -> Path:
    """Serialise a graph as it is: no checker here, some of these are meant to fail it."""
    graph = helper.make_graph(nodes, "cli_test", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return path


def tensor(name: str, shape: Sequence[int | str], elem: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info(name, elem, list(shape))


def batch_one_only_model(path: Path) -> Path:
    """Declares a dynamic batch ``N`` but reshapes to a constant batch of 1 inside: the probe
    (batch 1) passes, every batch > 1 fails inside ONNX Runtime at run time."""
    weight = numpy_helper.from_array(np.full((3, 3, 1, 1), 1 / 3, dtype=np.float32), "W")
    shape = numpy_helper.from_array(np.array([1, 3, 16, 16], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Reshape", ["image", "shape"], ["fixed"]),
        helper.make_node("Conv", ["fixed", "W"], ["logits"], kernel_shape=[1, 1]),
    ]
    save_graph(
        path,
        nodes,
        [tensor("image", ["N", 3, 16, 16])],
        [tensor("logits", ["a", "b", "c", "d"])],
        [weight, shape],
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def write_audio_only(path: Path) -> Path:
    """A WAV file: one PCM audio stream, no video."""
    with av.open(str(path), mode="w") as c:
        s: Any = c.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in s.encode(frame):
            c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return path


def packet_layout(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of every video packet, in file order."""
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(video=0) if p.size and p.pos is not None]


def faststart_video(path: Path, frames: int) -> Path:
    """H.264 in MP4 with the index first, so a cut-off file still opens."""
    return make_video(path, frames=frames, container_options={"movflags": "+faststart"})


# ----------------------------------------------------------------------------- happy paths


def test_sample_then_run_writes_video_and_json_lines(tmp_path: Path) -> None:
    made = worker(tmp_path, "sample", "clip.mp4", "--seconds", "0.4", "--size", "64x48")
    assert made.returncode == 0, made.stderr
    assert "10 frames" in made.stdout
    assert (tmp_path / "clip.mp4").is_file()

    proc = worker(tmp_path, "run", "--input", "clip.mp4", "--quiet")
    summary = summary_of(proc)
    assert proc.stderr == ""
    assert summary["task"] == "segment"
    assert summary["frames"] == 10
    assert summary["bad_packets"] == 0
    assert summary["output"] == "clip.segment.mp4"
    assert summary["results"] == "clip.segment.jsonl"
    records = jsonl(tmp_path / "clip.segment.jsonl")
    frames = decode(tmp_path / "clip.segment.mp4")
    assert len(frames) == len(records) == 10
    assert [r["frame"] for r in records] == list(range(10))
    assert all(set(r["coverage"]) <= {"background", "sky", "ground", "robot"} for r in records)
    assert frames[0][1].shape == (48, 64, 3)
    assert part_files(tmp_path) == []


def test_a_second_start_reuses_the_fused_graph_and_a_damaged_one_is_rebuilt(
    tmp_path: Path,
) -> None:
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "video-worker"
    make_video(tmp_path / "clip.mp4", frames=6)
    outputs = []
    for _ in range(2):
        proc = worker(tmp_path, "run", "--input", "clip.mp4", "--quiet", "--output", "none")
        summary_of(proc)
        outputs.append((tmp_path / "clip.segment.jsonl").read_text())
        if len(outputs) == 1:
            entries = sorted(cache.iterdir())
            # One graph, whole, what was read of the model, and its checksum by identity.
            assert sorted(p.suffix for p in entries) == [".facts", ".json", ".onnx", ".stat"]
            written = {p: p.stat().st_mtime_ns for p in entries}
    assert outputs[0] == outputs[1]
    onnx_file = next(p for p in written if p.suffix == ".onnx")
    assert onnx_file.stat().st_mtime_ns == written[onnx_file]  # read, not built again
    # A damaged entry is noticed (its checksum), rebuilt and replaced; the run is as before.
    onnx_file.write_bytes(onnx_file.read_bytes()[:100])
    proc = worker(tmp_path, "run", "--input", "clip.mp4", "--quiet", "--output", "none")
    summary_of(proc)
    assert (tmp_path / "clip.segment.jsonl").read_text() == outputs[0]
    assert onnx_file.stat().st_size > 100
    # Off by setting: nothing read or written.
    shutil.rmtree(cache)
    proc = worker(
        tmp_path, "run", "--input", "clip.mp4", "--quiet", "--output", "none",
        env={"WORKER_FUSE_CACHE": "false"},
    )  # fmt: skip
    summary_of(proc)
    assert not cache.exists()


def test_a_warm_start_reads_the_model_from_the_cache_and_never_imports_onnx(
    tmp_path: Path,
) -> None:
    # Importing onnx took ~0.8 s of a 1.7 s start here (ml_dtypes): a second start of the
    # same model has what it needs in the cache (its graph's facts, the probe, the fused
    # graph) and must not import it at all.
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "video-worker"
    make_model(tmp_path / "m.onnx", classes=3, stride=2)
    make_video(tmp_path / "clip.mp4", frames=4)
    run = ["run", "--input", "clip.mp4", "--model", "m.onnx", "--output", "none", "--quiet"]
    summary_of(worker(tmp_path, *run, "--results", "cold.jsonl"))
    warm = worker(tmp_path, *run, "--results", "warm.jsonl", prefix=[sys.executable, "-X",
                  "importtime", "-m", "worker"])  # fmt: skip
    assert summary_of(warm)["files"]["picture"] == "warm.png"
    imported = {line.rsplit("|", 1)[-1].strip() for line in warm.stderr.splitlines()}
    assert "numpy" in imported and "onnx" not in imported and "onnx.helper" not in imported
    # Nor numpy.ma (7 ms), which np.unique and np.median import on first use: the summary
    # picture's axis needs neither.
    assert "numpy.ma" not in imported
    # Nor what only watch rules, regions, tracks, dwell or lines use (7 ms of a start).
    unused = {f"worker.ops.{m}" for m in ("rules", "dwell", "lines", "regions", "tracking")}
    assert not unused & imported, unused & imported
    assert (tmp_path / "warm.jsonl").read_text() == (tmp_path / "cold.jsonl").read_text()
    # A damaged entry is read again from the model (and rewritten); so is another model's
    # bytes at the same path (its own entry: keyed by content, not by name).
    (facts,) = cache.glob("*.facts")
    facts.write_text("{")
    summary_of(worker(tmp_path, *run, "--results", "again.jsonl"))
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "cold.jsonl").read_text()
    assert json.loads(facts.read_text())["layout"] == "NCHW"
    make_model(tmp_path / "m.onnx", classes=5, stride=2)
    other = summary_of(worker(tmp_path, *run, "--results", "other.jsonl"))
    assert len(list(cache.glob("*.facts"))) == 2 and other["task"] == "segment"
    seen = {k for line in (tmp_path / "other.jsonl").read_text().splitlines()
            for k in json.loads(line)["coverage"]}  # fmt: skip
    assert seen <= {f"class_{i}" for i in range(5)} and seen & {"class_3", "class_4"}


#: ``python -c`` this, then the worker's arguments: the worker, then its peak RSS (KiB) last
#: on stderr.
_PEAK_RSS = (
    "import atexit, re, runpy, sys; atexit.register(lambda: print(re.search(r'VmHWM:\\s+(\\d+)',"
    " open('/proc/self/status').read())[1], file=sys.stderr)); sys.argv = ['worker',"
    " *sys.argv[1:]]; runpy.run_module('worker', run_name='__main__')"
)  # (VmHWM: ru_maxrss would count the parent's pages from before the exec)


def _heavy_classifier(path: Path, mib: int) -> Path:
    """A classifier whose weights weigh ``mib`` MiB: frame -> mean colour -> [3, K] MatMul ->
    two scores (their sum and their max), so every weight is used and none is folded away."""
    k = mib * 1024 * 1024 // 12
    w = np.random.default_rng(0).standard_normal((3, k)).astype(np.float32) / k
    n = helper.make_node
    graph = helper.make_graph(
        [
            n("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
            n("ReduceMean", ["f"], ["rgb"], axes=[1, 2], keepdims=0),  # [N, 3]
            n("MatMul", ["rgb", "w"], ["wide"]),
            n("ReduceSum", ["wide", "axis1"], ["a"], keepdims=1),
            n("ReduceMax", ["wide"], ["b"], axes=[1], keepdims=1),
            n("Concat", ["a", "b"], ["scores"], axis=1),
        ],
        "heavy",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 64, 64, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1]), "axis1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def test_a_warm_start_loads_the_model_s_weights_once(tmp_path: Path) -> None:
    # The plain session (made to probe the model) and the fused one each held a copy of the
    # weights, and the cached fused graph was read into bytes first; on a warm start the plain
    # one is never used, so it is never made, and ONNX Runtime reads the cached file itself.
    _heavy_classifier(tmp_path / "heavy.onnx", 160)
    _heavy_classifier(tmp_path / "light.onnx", 1)
    make_video(tmp_path / "clip.mp4", frames=2)
    peaks = {}
    for name in ("light", "heavy"):
        run = ["run", "--input", "clip.mp4", "--model", f"{name}.onnx", "--task", "classify",
               "--output", "none", "--results", f"{name}.jsonl", "--quiet"]  # fmt: skip
        summary_of(worker(tmp_path, *run))  # cold: builds the cache
        warm = worker(tmp_path, *run, prefix=[sys.executable, "-c", _PEAK_RSS])
        assert warm.returncode == 0, warm.stderr
        peaks[name] = int(warm.stderr.strip().splitlines()[-1]) / 1024  # MiB
    # ONNX Runtime holds the parsed graph and its weights at once while a session loads (two
    # copies at the peak, as any one session does: the tutorial's too); before, the plain
    # session's two and the cached fused graph read into bytes made four (+627 MiB here).
    assert peaks["heavy"] - peaks["light"] < 2.5 * 160, peaks


def _spying(module: str, name: str, record: str) -> list[str]:
    """A prefix for ``worker()``: ``python -m worker`` with ``module.name`` (a library's, not
    ours) wrapped so that every call appends ``record`` (an expression of the call's ``a``
    and ``k``) to a list, said last on stderr after "spied: " (``_spied`` reads it)."""
    code = (
        f"import atexit, runpy, sys, {module} as m; seen = []; real = m.{name}\n"
        f"def spy(*a, **k):\n    seen.append({record}); return real(*a, **k)\n"
        f"m.{name} = spy; atexit.register(lambda: print('spied:', repr(seen), file=sys.stderr))\n"
        "sys.argv = ['worker', *sys.argv[1:]]; runpy.run_module('worker', run_name='__main__')"
    )
    return [sys.executable, "-c", code]


def _spied(proc: subprocess.CompletedProcess[str]) -> list[Any]:
    return list(ast.literal_eval(proc.stderr.split("spied: ")[-1]))


#: Every file FFmpeg opens (``av.open``).
_OPENS = _spying("av", "open", "str(a[0])")


def test_the_input_is_opened_once(tmp_path: Path) -> None:
    # The CLI checked the input (FFmpeg reading the file's start: 9 ms at 720p) before the
    # model loaded, and the run then opened it again to decode it.
    make_model(tmp_path / "m.onnx", classes=3, stride=2)
    make_video(tmp_path / "clip.mp4", frames=4)
    run = ["run", "--input", "clip.mp4", "--model", "m.onnx", "--output", "out.mp4", "--quiet"]
    proc = worker(tmp_path, *run, prefix=_OPENS)
    assert summary_of(proc)["frames"] == 4
    opened = _spied(proc)
    assert opened.count("clip.mp4") == 1 and len(opened) == 2, opened  # and the output's
    # A bad input is still said before the model is read.
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    proc = worker(tmp_path, *run)
    assert proc.returncode != 0 and "input 'clip.mp4'" in proc.stderr, proc.stderr


#: Each ONNX Runtime session made: its intra-op threads and whether it has an arena.
_SESSIONS = _spying(
    "onnxruntime",
    "InferenceSession",
    "(k['sess_options'].intra_op_num_threads, k['sess_options'].enable_cpu_mem_arena)",
)


def test_the_first_frame_runs_on_every_core(tmp_path: Path) -> None:
    # Each lane's run has one lane's share of the cores, and so had the first frame's, while
    # the other lanes had nothing to run: a one-frame run took twice the model's time here.
    make_model(tmp_path / "m.onnx", classes=3, stride=2)
    make_video(tmp_path / "clip.mp4", frames=4)
    env = {"WORKER_CACHE_DIR": str(tmp_path / "cache")}
    run = ["run", "--input", "clip.mp4", "--model", "m.onnx", "--output", "out.mp4", "--quiet"]
    cores = os.cpu_count() or 1

    def sessions(*more: str) -> list[tuple[int, bool]]:
        proc = worker(tmp_path, *run, *more, env=env, prefix=_SESSIONS)
        assert proc.returncode == 0, proc.stderr
        return [tuple(s) for s in _spied(proc)]

    sessions()  # the fused graph built and cached, as a model's first run anywhere does
    if cores == 1:
        assert sessions() == [(1, True)]
        return
    # Warm: one session for a one-frame run, on every core; the lanes' own (their share of
    # the cores each, an arena) made after it, where more frames follow.
    assert sessions("--max-frames", "1") == [(cores, False)]
    assert sessions() == [(cores, False), (1, True)]
    assert sessions("--lanes", "1") == [(cores, True)]


#: ``python -c`` this, then the worker's arguments: the console script's ``worker`` with an
#: exit handler, and an object whose finaliser only the interpreter's teardown calls.
_TEARDOWN = (
    "import atexit, os, sys\n"
    "class Last:\n    def __del__(self, write=os.write):\n        write(2, b'torn down\\n')\n"
    "last = Last()\n"
    "atexit.register(lambda: print('exit handler', file=sys.stderr, flush=True))\n"
    "sys.argv = ['worker', *sys.argv[1:]]\n"
    "from worker.entry import command\ncommand()"
)


def test_the_command_ends_after_its_exit_handlers_without_the_teardown(tmp_path: Path) -> None:
    # Freeing every module's objects and the native libraries' teardown took 20-30 ms of
    # each run's end: the command skips it, and still runs the exit handlers and flushes.
    make_model(tmp_path / "m.onnx", classes=3, stride=2)
    make_video(tmp_path / "clip.mp4", frames=2)
    run = ["run", "--input", "clip.mp4", "--model", "m.onnx", "--output", "out.mp4"]
    done = worker(tmp_path, *run, prefix=[sys.executable, "-c", _TEARDOWN])
    assert summary_of(done)["frames"] == 2  # stdout flushed, a pipe here
    assert done.stderr.splitlines() == ["exit handler"], done.stderr
    assert len(decode(tmp_path / "out.mp4")) == 2
    # A failing run's code and its one line, as before.
    failed = worker(tmp_path, *run[:2], "nowhere.mp4", *run[3:],
                    prefix=[sys.executable, "-c", _TEARDOWN])  # fmt: skip
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.splitlines()[-1] == "exit handler" and "Traceback" not in failed.stderr
    assert "nowhere.mp4" in failed.stderr


def test_a_command_s_parser_built_alone_reads_what_the_whole_parser_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`worker CMD ...` builds CMD's flags only (every command's cost ~15 ms of each start):
    each command's help, built alone, is the one the parser of every command gives."""
    cli = importlib.import_module("worker.cli.main")
    for name in cli.COMMANDS:
        helps = []
        for command in (None, name):
            with pytest.raises(SystemExit):
                cli._parser(command).parse_args([name, "--help"])
            helps.append(capsys.readouterr().out)
        assert helps[0] == helps[1], name
        assert f"usage: worker {name}" in helps[0]
    assert cli._command_in(["run", "--input", "clip.mp4"]) == "run"
    assert cli._command_in(["--help"]) is None
    assert cli._command_in(["runn", "--input", "clip.mp4"]) is None


def test_classify_task_names_its_outputs(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=6)
    summary = summary_of(
        worker(tmp_path, "run", "--input", "clip.mp4", "--task", "classify", "--quiet")
    )
    assert summary["task"] == "classify"
    records = jsonl(tmp_path / "clip.classify.jsonl")
    assert len(records) == len(decode(tmp_path / "clip.classify.mp4")) == 6
    assert all(
        r["top"] and r["top"][0]["label"] in {"red", "green", "blue", "neutral"} for r in records
    )
    assert not (tmp_path / "clip.segment.mp4").exists()


def test_inspect_prints_what_the_worker_reads(tmp_path: Path) -> None:
    make_model(
        tmp_path / "seg.onnx",
        layout="NHWC",
        classes=3,
        card={"labels": ["bg", "road", "car"], "resize": "letterbox"},
    )
    proc = worker(tmp_path, "inspect", "seg.onnx")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["layout"] == "NHWC"
    assert info["task"] == "segment"
    assert info["card"] == "seg.json"
    assert info["effective_card"]["labels"] == ["bg", "road", "car"]
    assert info["effective_card"]["resize"] == "letterbox"
    assert info["effective_card"]["input_size"] == [32, 32]

    make_model(tmp_path / "cls.onnx", output="classify", classes=4)
    info = json.loads(worker(tmp_path, "inspect", "cls.onnx").stdout)
    assert (info["layout"], info["task"], info["card"]) == ("NCHW", "classify", None)
    assert info["effective_card"]["labels"] == [f"class_{i}" for i in range(4)]


def test_custom_output_paths_in_new_folders(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=5)
    summary = summary_of(
        worker(
            tmp_path,
            "run",
            "--input",
            "clip.mp4",
            "--quiet",
            "--output",
            "out/video/annotated.mp4",
            "--results",
            "out/data/frames.jsonl",
        )
    )
    assert summary["output"] == "out/video/annotated.mp4"
    assert summary["results"] == "out/data/frames.jsonl"
    assert len(decode(tmp_path / "out/video/annotated.mp4")) == 5
    assert len(jsonl(tmp_path / "out/data/frames.jsonl")) == 5
    assert not (tmp_path / "clip.segment.mp4").exists()
    assert not (tmp_path / "clip.segment.jsonl").exists()
    assert part_files(tmp_path) == []


# ------------------------------------------------------------------------------ bad inputs


@dataclass
class Case:
    args: list[str]
    needles: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _clip(tmp: Path) -> None:
    make_video(tmp / "clip.mp4", frames=4)


def _run_with_model(tmp: Path, model: Path, *needles: str) -> Case:
    _clip(tmp)
    return Case(
        ["run", "--input", "clip.mp4", "--model", model.name, "--quiet"],
        [f"'{model.name}'", *needles],
    )


def _card_case(tmp: Path, text: str, *needles: str) -> Case:
    make_model(tmp / "ok.onnx", classes=3)
    (tmp / "card.json").write_text(text)
    _clip(tmp)
    return Case(
        ["run", "--input", "clip.mp4", "--model", "ok.onnx", "--card", "card.json"], list(needles)
    )


def _missing_input(tmp: Path) -> Case:
    return Case(["run", "--input", "missing.mp4"], ["'missing.mp4'", "not found"])


def _directory_input(tmp: Path) -> Case:
    (tmp / "folder.mp4").mkdir()
    return Case(["run", "--input", "folder.mp4"], ["'folder.mp4'", "not a file"])


def _text_input(tmp: Path) -> Case:
    (tmp / "notes.mp4").write_text("these are meeting notes, not a video\n")
    return Case(["run", "--input", "notes.mp4"], ["'notes.mp4'", "not a readable video"])


def _audio_only_input(tmp: Path) -> Case:
    write_audio_only(tmp / "tone.wav")
    return Case(["run", "--input", "tone.wav"], ["'tone.wav'", "no video stream", "audio"])


def _unknown_codec(tmp: Path) -> Case:
    # The sample entry's codec tag made unrecognisable: FFmpeg opens it but has no decoder.
    data = bytearray(make_video(tmp / "clip.mp4", frames=4).read_bytes())
    entry = data.index(b"avc1", data.index(b"stsd"))
    data[entry : entry + 4] = b"zzzz"
    (tmp / "odd.mp4").write_bytes(bytes(data))
    return Case(["run", "--input", "odd.mp4"], ["'odd.mp4'", "no decoder"])


def _no_input_given(tmp: Path) -> Case:
    return Case(["run", "--quiet"], ["--input is required"])


def _model_random_bytes(tmp: Path) -> Case:
    model = tmp / "noise.onnx"
    model.write_bytes(np.random.default_rng(7).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return _run_with_model(tmp, model, "not an ONNX model")


def _model_text_file(tmp: Path) -> Case:
    model = tmp / "readme.onnx"
    model.write_text("this is not a model, just some text\n")
    return _run_with_model(tmp, model, "not an ONNX model")


def _model_fails_checker(tmp: Path) -> Case:
    model = save_graph(
        tmp / "dangling.onnx",
        [helper.make_node("Relu", ["nowhere"], ["y"])],
        [tensor("image", [1, 3, 8, 8])],
        [tensor("y", [1, 3, 8, 8])],
    )
    return _run_with_model(tmp, model, "onnx.checker", "'nowhere'")


def _model_two_inputs(tmp: Path) -> Case:
    model = save_graph(
        tmp / "two.onnx",
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [tensor("a", [1, 3, 8, 8]), tensor("b", [1, 3, 8, 8])],
        [tensor("y", [1, 3, 8, 8])],
    )
    return _run_with_model(tmp, model, "2 inputs", "a[1,3,8,8]", "b[1,3,8,8]", "[N,3,H,W]")


def _model_3d_input(tmp: Path) -> Case:
    model = save_graph(
        tmp / "flat.onnx",
        [helper.make_node("Relu", ["image"], ["y"])],
        [tensor("image", [3, 8, 8])],
        [tensor("y", [3, 8, 8])],
    )
    return _run_with_model(tmp, model, "image[3,8,8]", "[N,3,H,W]", "[N,H,W,3]")


def _model_one_channel(tmp: Path) -> Case:
    model = save_graph(
        tmp / "gray.onnx",
        [helper.make_node("Relu", ["image"], ["y"])],
        [tensor("image", [1, 1, 8, 8])],
        [tensor("y", [1, 1, 8, 8])],
    )
    return _run_with_model(tmp, model, "image[1,1,8,8]", "3 colour channels")


def _model_int64_input(tmp: Path) -> Case:
    model = save_graph(
        tmp / "ints.onnx",
        [helper.make_node("Cast", ["image"], ["y"], to=TensorProto.FLOAT)],
        [tensor("image", [1, 3, 8, 8], TensorProto.INT64)],
        [tensor("y", [1, 3, 8, 8])],
    )
    return _run_with_model(tmp, model, "image[1,3,8,8] int64", "float32, float16 or uint8")


def _model_rank5_output(tmp: Path) -> Case:
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    unsqueeze = helper.make_node("Unsqueeze", ["image", "axes"], ["y"])
    model = save_graph(
        tmp / "rank5.onnx",
        [unsqueeze],
        [tensor("image", [1, 3, 8, 8])],
        [tensor("y", [1, 1, 3, 8, 8])],
        [axes],
    )
    return _run_with_model(tmp, model, "[1, 1, 3, 8, 8]", "cannot be segmented", "[N,C,H,W]")


def _model_dynamic_size_without_card(tmp: Path) -> Case:
    model = make_model(tmp / "anysize.onnx", hw=(None, None))
    return _run_with_model(tmp, model, "image[?,3,?,?]", "dynamic height/width", "input_size")


def _card_unknown_field(tmp: Path) -> Case:
    return _card_case(
        tmp,
        json.dumps({"colour_order": "bgr"}),
        "'card.json'",
        "unknown key 'colour_order'",
        "did you mean 'color_order'",
    )


def _card_wrong_type(tmp: Path) -> Case:
    return _card_case(tmp, json.dumps({"labels": 5}), "'card.json'", "labels", "expected a list")


def _card_invalid_json(tmp: Path) -> Case:
    return _card_case(tmp, '{"labels": ["a", "b",', "'card.json'", "not valid JSON")


def _card_label_count(tmp: Path) -> Case:
    return _card_case(
        tmp, json.dumps({"labels": ["a", "b"]}), "'ok.onnx'", "card has 2 labels", "3 classes"
    )


def _alpha_out_of_range(tmp: Path) -> Case:
    _clip(tmp)
    return Case(
        ["run", "--input", "clip.mp4", "--alpha", "2"], ["--alpha", "expected a number at most 1"]
    )


def _alpha_env_not_a_number(tmp: Path) -> Case:
    _clip(tmp)
    return Case(
        ["run", "--input", "clip.mp4"],
        ["WORKER_ALPHA", "expected a number, got 'abc'"],
        env={"WORKER_ALPHA": "abc"},
    )


def _dotenv_unknown_key(tmp: Path) -> Case:
    _clip(tmp)
    (tmp / ".env").write_text("WORKER_ALHPA=0.3\n")
    return Case(
        ["run", "--input", "clip.mp4"],
        ["setting WORKER_ALHPA ", ".env", "unknown key"],
    )


def _output_under_a_file(tmp: Path) -> Case:
    _clip(tmp)
    (tmp / "somefile.txt").write_text("a file, not a folder\n")
    return Case(
        ["run", "--input", "clip.mp4", "--output", "somefile.txt/out.mp4"],
        ["'somefile.txt/out.mp4'", "cannot write"],
    )


def _output_is_the_input(tmp: Path) -> Case:
    _clip(tmp)
    return Case(
        ["run", "--input", "clip.mp4", "--output", "clip.mp4"],
        ["output 'clip.mp4'", "would overwrite the input"],
    )


def _results_is_the_input(tmp: Path) -> Case:
    _clip(tmp)
    return Case(
        ["run", "--input", "clip.mp4", "--results", "./clip.mp4"],
        ["results 'clip.mp4'", "would overwrite the input"],
    )


def _cuda_without_cuda(tmp: Path) -> Case:
    if Path("/dev/nvidiactl").exists():
        pytest.skip("an NVIDIA GPU is present here, so --provider cuda may well load")
    _clip(tmp)
    return Case(["run", "--input", "clip.mp4", "--provider", "cuda"], ["provider 'cuda'"])


def _unknown_subcommand(tmp: Path) -> Case:
    return Case(["frobnicate"], ["'frobnicate'", "invalid choice"])


def _unknown_flag(tmp: Path) -> Case:
    _clip(tmp)
    return Case(["run", "--input", "clip.mp4", "--colour", "red"], ["unrecognized", "--colour"])


def _sample_bad_size(tmp: Path) -> Case:
    return Case(["sample", "tiny.mp4", "--size", "8x8"], ["--size", "'8x8'"])


def _inspect_not_a_model(tmp: Path) -> Case:
    (tmp / "notes.onnx").write_text("this is not a model, just some text\n")
    return Case(["inspect", "notes.onnx"], ["'notes.onnx'", "not an ONNX model"])


BAD: dict[str, Callable[[Path], Case]] = {
    "missing input": _missing_input,
    "directory as input": _directory_input,
    "text file as input": _text_input,
    "audio-only input": _audio_only_input,
    "video of an unknown codec": _unknown_codec,
    "no input given": _no_input_given,
    "model of random bytes": _model_random_bytes,
    "model is a text file": _model_text_file,
    "model fails onnx.checker": _model_fails_checker,
    "model with two inputs": _model_two_inputs,
    "model with a 3-D input": _model_3d_input,
    "model with 1 channel": _model_one_channel,
    "model with an int64 input": _model_int64_input,
    "model with a rank-5 output": _model_rank5_output,
    "dynamic size, no card input_size": _model_dynamic_size_without_card,
    "card with an unknown field": _card_unknown_field,
    "card with a wrong type": _card_wrong_type,
    "card of invalid JSON": _card_invalid_json,
    "card labels do not match classes": _card_label_count,
    "--alpha 2": _alpha_out_of_range,
    "WORKER_ALPHA=abc": _alpha_env_not_a_number,
    ".env with an unknown WORKER_ key": _dotenv_unknown_key,
    "output under a regular file": _output_under_a_file,
    "output is the input": _output_is_the_input,
    "results is the input": _results_is_the_input,
    "--provider cuda without CUDA": _cuda_without_cuda,
    "unknown subcommand": _unknown_subcommand,
    "unknown flag": _unknown_flag,
    "sample with a bad --size": _sample_bad_size,
    "inspect a text file": _inspect_not_a_model,
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path: Path, name: str) -> None:
    case = BAD[name](tmp_path)
    before = tree(tmp_path)
    proc = worker(tmp_path, *case.args, env=case.env)
    one_error(proc, *case.needles)
    assert tree(tmp_path) == before  # no output, no .part temporary, no new folder


# Drop CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) from the bounding set, then exec the
# worker: root keeps only the capabilities in that set across exec, so for the worker a
# mode-000 file is unreadable, as it is for everyone else. Exit 97: the drop was refused.
_WITHOUT_DAC_OVERRIDE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_CAPBSET_DROP = 24
for cap in (1, 2):
    if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
        sys.exit(97)
os.execv(sys.executable, [sys.executable, "-m", "worker", *sys.argv[1:]])
"""


def test_unreadable_input(tmp_path: Path) -> None:
    make_video(tmp_path / "locked.mp4", frames=4)
    (tmp_path / "locked.mp4").chmod(0)
    before = tree(tmp_path)
    prefix: tuple[str, ...] = (sys.executable, "-m", "worker")
    if os.geteuid() == 0:
        # chmod does not stop root (CAP_DAC_OVERRIDE), and tests often run as root in CI.
        prefix = (sys.executable, "-c", _WITHOUT_DAC_OVERRIDE)
    proc = worker(tmp_path, "run", "--input", "locked.mp4", "--quiet", prefix=prefix)
    if proc.returncode == 97:
        pytest.skip("running as root without CAP_SETPCAP: cannot make a file unreadable to it")
    one_error(proc, "'locked.mp4'", "cannot read", "Permission denied")
    assert tree(tmp_path) == before


# ------------------------------------------------------------------- truncated and corrupt


def test_truncated_video_keeps_every_whole_frame(tmp_path: Path) -> None:
    src = faststart_video(tmp_path / "full.mp4", frames=60)
    data = src.read_bytes()
    packets = packet_layout(src)
    assert len(packets) == 60
    # Cut in the middle of the packet that holds the byte at 60 %: a realistic torn write.
    k = next(i for i, (pos, size) in enumerate(packets) if pos + size > len(data) * 0.6)
    pos, size = packets[k]
    (tmp_path / "cut.mp4").write_bytes(data[: pos + max(size // 2, 1)])

    proc = worker(tmp_path, "run", "--input", "cut.mp4", "--quiet")
    summary = summary_of(proc)
    # Every packet before the cut is whole, and ultrafast x264 has no B-frames: one frame each.
    assert 0 < summary["frames"] == k < 60
    assert summary["bad_packets"] >= 1
    assert "cut.mp4" in proc.stderr and "undecodable" in proc.stderr
    assert "Traceback" not in proc.stderr
    records = jsonl(tmp_path / "cut.segment.jsonl")
    assert [r["frame"] for r in records] == list(range(k))
    assert len(decode(tmp_path / "cut.segment.mp4")) == k
    assert part_files(tmp_path) == []


def test_corrupt_middle_is_skipped_and_counted(tmp_path: Path) -> None:
    src = faststart_video(tmp_path / "full.mp4", frames=60)
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(3)
    for pos, size in packet_layout(src)[25:35]:
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "noisy.mp4").write_bytes(bytes(data))

    proc = worker(tmp_path, "run", "--input", "noisy.mp4", "--quiet")
    summary = summary_of(proc)
    assert 25 <= summary["frames"] < 60  # everything before the damage, and some after it
    assert summary["bad_packets"] >= 1
    assert "noisy.mp4" in proc.stderr and "undecodable" in proc.stderr
    records = jsonl(tmp_path / "noisy.segment.jsonl")
    assert len(records) == summary["frames"] == len(decode(tmp_path / "noisy.segment.mp4"))
    assert part_files(tmp_path) == []


def test_read_errors_end_the_input_and_keep_what_was_read(tmp_path: Path) -> None:
    # Raw video in Y4M: every frame starts "FRAME". A damaged marker makes the demuxer itself
    # fail (not the decoder), on every read from there on: the run keeps the frames before it.
    src = make_video(
        tmp_path / "raw.y4m", frames=20, codec="rawvideo", container_format="yuv4mpegpipe"
    )
    data = src.read_bytes()
    marks = [i for i in range(len(data)) if data.startswith(b"FRAME", i)]
    assert len(marks) == 20
    damaged = bytearray(data)
    damaged[marks[12] : marks[12] + 5] = b"FRAMX"
    (tmp_path / "torn.y4m").write_bytes(bytes(damaged))

    proc = worker(tmp_path, "run", "--input", "torn.y4m", "--quiet")
    summary = summary_of(proc)
    assert summary["frames"] == 12
    assert summary["bad_packets"] >= 1
    assert "torn.y4m" in proc.stderr and "read error" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(jsonl(tmp_path / "torn.segment.jsonl")) == 12
    assert len(decode(tmp_path / "torn.segment.mp4")) == 12
    assert part_files(tmp_path) == []


def test_video_with_no_decodable_frame_is_an_input_error(tmp_path: Path) -> None:
    src = faststart_video(tmp_path / "full.mp4", frames=10)
    pos, size = packet_layout(src)[0]
    (tmp_path / "stub.mp4").write_bytes(src.read_bytes()[: pos + size // 2])
    before = tree(tmp_path)

    proc = worker(tmp_path, "run", "--input", "stub.mp4", "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert "'stub.mp4'" in errors[0] and "no frame could be decoded" in errors[0]
    assert tree(tmp_path) == before  # not even an empty "video"


# ------------------------------------------------------------------------------- settings


def test_settings_precedence_cli_over_env_over_dotenv_over_defaults(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=12)

    def frames(*extra: str, env: dict[str, str] | None = None) -> int:
        proc = worker(tmp_path, "run", "--input", "clip.mp4", "--quiet", *extra, env=env)
        n = summary_of(proc)["frames"]
        assert len(jsonl(tmp_path / "clip.segment.jsonl")) == n
        assert isinstance(n, int)
        return n

    assert frames() == 12  # default: every frame
    # Entries of other tools in a shared .env are not ours to refuse.
    (tmp_path / ".env").write_text("REDIS_URL=redis://localhost:6379/0\nWORKER_MAX_FRAMES=7\n")
    assert frames() == 7
    assert frames(env={"WORKER_MAX_FRAMES": "5"}) == 5
    assert frames("--max-frames", "3", env={"WORKER_MAX_FRAMES": "5"}) == 3


# ---------------------------------------------------------------------------- interruption


def test_ctrl_c_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    make_video(tmp_path / "long.mp4", frames=400, width=320, height=240)
    # A deliberately slow model (21 classes at 640x640, ~20 ms a frame): on a loaded machine the
    # demo model could finish all 400 frames before this process gets to send the signal.
    slow = make_model(tmp_path / "slow.onnx", output="logits", classes=21, hw=(640, 640))
    out = tmp_path / "out"
    before = tree(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker",
            "run",
            "--input",
            "long.mp4",
            "--quiet",
            "--model",
            str(slow),
            "--output",
            "out/long.mp4",
            "--results",
            "out/long.jsonl",
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Started for real: the outputs' temporaries exist, so the pipeline is running.
        deadline = time.monotonic() + TIMEOUT_S
        while not (out.is_dir() and part_files(out)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never created its temporary outputs"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), stderr
    assert tree(tmp_path) - before <= {"out"}  # the folder may stay, nothing in it
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------- stage failures


def test_stage_failing_at_run_time_stops_the_run(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=12)
    batch_one_only_model(tmp_path / "b1.onnx")
    before = tree(tmp_path)
    started = time.monotonic()
    proc = worker(
        tmp_path, "run", "--input", "clip.mp4", "--model", "b1.onnx", "--batch", "4", "--quiet"
    )
    elapsed = time.monotonic() - started
    line = one_error(proc, "stage 'inference' failed", code=1)
    assert "reshape" in line.lower()
    assert elapsed < TIMEOUT_S / 2, elapsed  # stopped promptly, no stage left waiting
    assert tree(tmp_path) == before


def test_stage_failure_in_process_raises_stage_error(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=12)
    model = load_model(batch_one_only_model(tmp_path / "b1.onnx"), provider="cpu", threads=1)
    before = tree(tmp_path)
    with pytest.raises(StageError) as caught:
        run_file(clip, model, described(batch=4), output=tmp_path / "o.mp4",
                 results=tmp_path / "o.jsonl")  # fmt: skip
    assert caught.value.stage == "inference"
    assert caught.value.exit_code == 1
    assert caught.value.__cause__ is not None
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- progress bar


def _run_on_a_terminal(tmp: Path, *extra: str) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; returns (exit code, what the terminal got)."""
    master, slave = pty.openpty()
    # A terminal 100 columns wide: tqdm draws nothing at all on a 0x0 one.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run", "--input", "clip.mp4", *extra],
            cwd=tmp,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # Read while it runs (a full terminal buffer would block it) until it hangs up.
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer is gone and the buffer is drained
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode(errors="replace")


def test_progress_bar_only_on_a_terminal_and_never_with_quiet(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=8)
    code, shown = _run_on_a_terminal(tmp_path)
    assert code == 0
    assert "clip.mp4" in shown and "frame" in shown  # tqdm: "clip.mp4: ...| 0/8 [..frame/s]"

    code, shown = _run_on_a_terminal(tmp_path, "--quiet")
    assert code == 0
    assert shown == ""

    proc = worker(tmp_path, "run", "--input", "clip.mp4")  # stderr is a pipe here
    assert summary_of(proc)["frames"] == 8
    assert proc.stderr == ""


def test_a_classifier_of_a_thousand_classes_runs_to_the_end_with_its_picture(
    tmp_path: Path,
) -> None:
    # ImageNet's 1000 classes: the run picture took each label's colour from the 256-entry
    # table masks are painted through, and the run failed at its very end, nothing published.
    make_model(tmp_path / "m.onnx", output="classify", classes=1000)
    make_video(tmp_path / "clip.mp4", frames=4)
    proc = worker(tmp_path, "run", "--input", "clip.mp4", "--model", "m.onnx", "--quiet")
    summary = summary_of(proc)
    assert summary["frames"] == 4 and (tmp_path / "clip.classify.mp4").is_file()
    picture = summary["files"]["picture"]
    assert picture and (tmp_path / picture).read_bytes().startswith(b"\x89PNG")
    lines = (tmp_path / "clip.classify.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["top"] for line in lines)


def test_a_model_rewritten_in_place_at_its_old_size_and_time_is_read_again(
    tmp_path: Path,
) -> None:
    # A start takes an unchanged model's checksum from the cache, by the file's identity; new
    # weights of the same size, the old modification time set back, must still be seen.
    make_video(tmp_path / "clip.mp4", frames=4)
    model = make_model(tmp_path / "m.onnx", classes=3, seed=0)
    run = ["run", "--input", "clip.mp4", "--model", "m.onnx", "--output", "none", "--quiet"]
    summary_of(worker(tmp_path, *run, "--results", "first.jsonl"))
    before = model.stat()
    make_model(model, classes=3, seed=1)
    assert model.stat().st_size == before.st_size
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    summary_of(worker(tmp_path, *run, "--results", "cached.jsonl"))
    uncached = {"WORKER_FUSE_CACHE": "false"}
    summary_of(worker(tmp_path, *run, "--results", "fresh.jsonl", env=uncached))
    cached, fresh = ((tmp_path / f"{n}.jsonl").read_text() for n in ("cached", "fresh"))
    assert cached == fresh != (tmp_path / "first.jsonl").read_text()


def test_a_cold_start_clears_what_interrupted_cache_writes_left(tmp_path: Path) -> None:
    # A cache entry is written under `.<name>.<pid>.part` and renamed; a start killed between
    # the two (Ctrl-C, SIGKILL, a power cut during a cold start) left that file in the user's
    # cache for good. Another writer's, still alive, must be left alone.
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "video-worker"
    cache.mkdir(parents=True, exist_ok=True)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    stale = cache / f".0123abcd.onnx.{int(ended.stdout)}.part"
    stale.write_bytes(b"half a graph")
    writing = cache / f".4567cdef.onnx.{os.getpid()}.part"
    writing.write_bytes(b"a graph being written")
    make_model(tmp_path / "m.onnx", classes=4, seed=7)  # a model no other test caches
    make_video(tmp_path / "clip.mp4", frames=2)
    summary_of(worker(tmp_path, "run", "--input", "clip.mp4", "--model", "m.onnx",
                      "--output", "none", "--quiet"))  # fmt: skip
    assert not stale.exists() and writing.exists()
    writing.unlink()
