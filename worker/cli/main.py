"""The ``worker`` command: a thin layer over the stages, the queue, the live monitor and the export.

Exit codes: 0 done; 2 usage or input error (one ``error:`` line on stderr, no traceback);
1 a stage failed at run time; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from worker.cli.flags import (
    ANALYTICS,
    ENCODE,
    EVENTS,
    FILE_OUTPUTS,
    LOOK,
    MODEL,
    Flag,
    add_flags,
    add_pipeline_flag,
    settings_args,
)
from worker.cli.queue import QUEUE_COMMANDS, add_queue_parsers
from worker.collector import release
from worker.errors import Cancelled, OutputError, WorkerError
from worker.settings import load_settings
from worker.signals import arrived
from worker.urls import redact_urls

if TYPE_CHECKING:
    from worker.models import Model
    from worker.settings import Settings
    from worker.stages import VideoSource

__all__ = ["main", "setup_logging"]

log = logging.getLogger("worker")


class _Redacted(logging.Filter):
    """No URL's credentials in any log line (a job's input, a webhook, a camera)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        shown = redact_urls(text)
        if shown != text:
            record.msg, record.args = shown, None
        return True


def setup_logging(fmt: str, *, force: bool = False) -> None:
    """Warnings and errors to stderr in ``fmt``, URLs redacted."""
    logging.basicConfig(level=logging.WARNING, format=fmt, force=force)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redacted())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error we print; `--help` still shows the full usage.
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


#: What to run and where results go (``worker run``).
RUN_FLAGS = (
    # Read as text: Path("rtsp://host/x") would become "rtsp:/host/x" before it is checked.
    Flag("input", type=str),
    Flag("output", help="annotated video (default: <input>.<task>.mp4; 'none': no video, "
         "results and events only; a FIFO or /dev/null is written straight through)"),
    Flag("results", help="JSON lines (default: <input>.<task>.jsonl; '-': stdout, and the "
         "summary goes to stderr)"),
)  # fmt: skip
RUN_CONTROL = (
    Flag("max_frames"),
    Flag("queue_size"),
    Flag("quiet", kind="on", help="no progress bar"),
    Flag("debug", kind="on", help="tracebacks on errors"),
)


class _OnlyOne:
    """The subcommands, less every command but ``name``: each other one's ``add_parser`` gives
    a parser that keeps nothing. Building every command's flags took ~15 ms of each start
    (a fifth of what ``worker run`` spends before its first frame beyond the imports), and
    argparse reads only the named command's."""

    def __init__(self, sub: Any, name: str) -> None:
        self._sub, self._name = sub, name

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        return self._sub.add_parser(name, **kwargs) if name == self._name else _Ignored()


class _Ignored:
    """A parser for a command not being run: whatever is added to it is dropped."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        return None


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names if it is one of ours (the top level takes no option but
    ``--help``, so the first word that is not an option is the command); else None."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``command``, that command's flags only (see
    ``_OnlyOne``). Without (``worker --help``, a mistyped command), every command's."""
    p = _Parser(prog="worker", description="Run ONNX segmentation/classification models on video.")
    every = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub: Any = every if command is None else _OnlyOne(every, command)

    def wanted(name: str) -> bool:
        return command in (None, name)

    s = sub.add_parser("sample", help="write a short synthetic sample video")
    s.add_argument("path", type=Path, help="where to write the MP4 (e.g. robot.mp4)")
    s.add_argument("--seconds", type=float, default=4.0)
    s.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    s.add_argument("--fps", type=int, default=25)

    r = sub.add_parser("run", help="process a video file: annotated video + JSON lines")
    add_pipeline_flag(r, "the run (input, model, outputs, options)")
    add_flags(r, RUN_FLAGS, MODEL, LOOK, ENCODE, ANALYTICS, FILE_OUTPUTS, EVENTS, RUN_CONTROL)

    sub.add_parser(
        "password",
        help="read a password (typed, or one line on stdin) and print the salted hash to "
        "set as WORKER_UI_PASSWORD_HASH",
    )

    i = sub.add_parser("inspect", help="show what the worker reads from a model and its card")
    i.add_argument("model", type=Path, help="model name in the repository, or .onnx path")
    i.add_argument("--card", type=Path)
    i.add_argument("--task", choices=["segment", "classify"])

    ms = sub.add_parser("models", help="list the models in the repository (WORKER_MODEL_ROOT)")
    ms.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    if wanted("export"):
        from worker.cli.export import add_arguments  # no torch here: checked when export runs

        x = sub.add_parser("export", help="PyTorch checkpoint -> verified ONNX model + card")
        add_arguments(x)

    add_queue_parsers(sub)  # serve, submit, status, cancel, jobs, check

    if wanted("monitor"):
        from worker.cli.monitor import add_monitor_parser

        add_monitor_parser(sub)

    if wanted("bench"):
        from worker.cli.bench import add_arguments as add_bench_arguments

        b = sub.add_parser("bench", help="model throughput per provider/batch/binding/fusion")
        add_bench_arguments(b)
    return p


def _cmd_sample(args: argparse.Namespace) -> int:
    from worker.stages.sample import write_sample

    try:
        w, h = (int(v) for v in str(args.size).lower().split("x"))
        if w < 16 or h < 16:
            raise ValueError
    except ValueError:
        raise WorkerError(
            f"--size '{args.size}': expected WIDTHxHEIGHT, each at least 16"
        ) from None
    if args.seconds <= 0 or args.fps <= 0:
        raise WorkerError("--seconds and --fps must be positive")
    n = write_sample(args.path, seconds=args.seconds, fps=args.fps, width=w, height=h)
    print(f"wrote {args.path} ({n} frames, {w}x{h}, {args.fps} fps)")
    return 0


def _file_input(text: str) -> Path:
    """``--input`` as the video file ``worker run`` reads (a ``file://`` URL is one too)."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "file":
        return Path(text.split("://", 1)[1])
    if scheme:
        hint = (
            "for cameras use 'worker monitor'"
            if scheme in ("rtsp", "rtsps")
            else "for downloads use 'worker submit' (a queued job fetches http(s) inputs)"
        )
        raise WorkerError(
            f"--input '{redact_urls(text)}' is a URL ({scheme}://); 'worker run' reads video "
            f"files: {hint}"
        )
    return Path(text)


def _cmd_run(args: argparse.Namespace) -> int:
    from worker.cli.common import configured_model
    from worker.stages.runner import open_source

    flags = settings_args(
        args, RUN_FLAGS, MODEL, LOOK, ENCODE, ANALYTICS, FILE_OUTPUTS, EVENTS, RUN_CONTROL
    )
    settings = load_settings(args.pipeline, **flags)
    if settings.input is None:
        raise WorkerError("--input is required (or set WORKER_INPUT)")
    inp = _file_input(settings.input)
    # The input first: a missing or unreadable video is said before a large model loads
    # (opened once: the run decodes from this source).
    source = open_source(inp, settings.run, settings.max_frames)
    try:
        return _run_opened(settings, inp, source, configured_model(settings))
    finally:
        source.close()


def _run_opened(settings: Settings, inp: Path, source: VideoSource, model: Model) -> int:
    from worker.stages import run_file
    from worker.stages.runner import plan_outputs

    no_video = settings.output is not None and str(settings.output).lower() == "none"
    output = (
        None if no_video else (settings.output or inp.with_name(f"{inp.stem}.{model.task}.mp4"))
    )
    results = settings.results or inp.with_name(f"{inp.stem}.{model.task}.jsonl")
    run = settings.run
    events = settings.events if settings.events != "redis" else None
    # Every file of the run checked against the input and each other before any is opened
    # (--events is appended to: pointed at the input, it would grow the video).
    plan_outputs(inp, output, results, run, events=Path(events) if events else None)
    sink = None
    if run.analytics.watch and (settings.events or settings.webhook):
        from worker.sinks import open_sinks  # with its HTTP client: only where events go out

        webhook = settings.webhook.get_secret_value() if settings.webhook else None
        sink = open_sinks(
            settings.events, webhook, settings.redis_url.get_secret_value(), settings.queue
        )
    # With the JSON lines on stdout (--results -), the summary goes to stderr.
    summary_to = sys.stderr if str(results) == "-" else sys.stdout
    try:
        summary = run_file(
            source,
            model,
            run,
            output=output,
            results=results,
            max_frames=settings.max_frames,
            emit=sink.write if sink is not None else None,
            events_file=not settings.events,
            progress=not settings.quiet and sys.stderr.isatty(),
        )
    finally:
        if sink is not None:
            sink.close()
    said = summary.to_dict()
    if sink is not None:
        # Where the events went, and how many could not be delivered (the README's promise).
        went = sink.describe()
        said["events_sink"] = went
        said["events"]["lost"] = sum(s.get("lost", 0) for s in went.get("sinks", [went]))
    print(json.dumps(said), file=summary_to, flush=True)
    return 0


def _cmd_password(args: argparse.Namespace) -> int:
    import getpass

    from worker.web.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise WorkerError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise WorkerError("the password is shorter than 8 characters; choose a longer one")
    print(hash_password(password))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from worker.models import load_model, resolve_model

    path = resolve_model(args.model, load_settings().model_root)
    model = load_model(path, card=args.card, task=args.task, provider="cpu")
    print(json.dumps(model.describe(), indent=2))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from worker.cli.models import cmd_models

    return cmd_models(args, load_settings())


def _cmd_export(args: argparse.Namespace) -> int:
    from worker.cli.export import cmd_export

    return cmd_export(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from worker.cli.bench import cmd_bench

    return cmd_bench(args)


def _cmd_monitor(args: argparse.Namespace) -> int:
    from worker.cli.monitor import cmd_monitor

    return cmd_monitor(args)


def _env_debug() -> bool:
    try:
        return load_settings().debug
    except WorkerError:
        return False


def _one_line(e: BaseException) -> str:
    """The message on one line (a library's, ONNX Runtime's say, may span several), with no
    URL's credentials in it."""
    return redact_urls(" ".join(line.strip() for line in str(e).splitlines() if line.strip()))


#: Subcommand -> handler. A handler gets the parsed arguments and returns the exit code; it
#: raises WorkerError for anything the user should read as one line.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sample": _cmd_sample,
    "run": _cmd_run,
    "inspect": _cmd_inspect,
    "password": _cmd_password,
    "models": _cmd_models,
    "export": _cmd_export,
    **QUEUE_COMMANDS,
    "monitor": _cmd_monitor,
    "bench": _cmd_bench,
}


#: Commands that start the collector themselves when their work starts (see worker.collector):
#: their start-up (ONNX Runtime, PyAV, the model) is what holding it speeds up.
_RELEASE_WHEN_WORK_STARTS = frozenset({"run", "monitor", "serve"})


def main(argv: Sequence[str] | None = None) -> int:
    code = _main(argv)
    if any(t.name.startswith("worker-") and t.is_alive() for t in threading.enumerate()):
        # A stage stuck in native code past its grace period: finalizing the interpreter
        # around it would abort (see worker.signals). Leave without finalizing.
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = _parser(_command_in(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    setup_logging("%(levelname)s: %(message)s")
    flag = bool(getattr(args, "debug", False))

    def debug() -> bool:
        # Before settings exist only the flag can ask for tracebacks; WORKER_DEBUG counts
        # too, read only when there is a traceback to show (settings cost ms to build).
        return flag or _env_debug()

    if args.command not in _RELEASE_WHEN_WORK_STARTS:
        release()
    try:
        return COMMANDS[args.command](args)
    except Cancelled as e:
        print(f"error: interrupted: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except WorkerError as e:
        if isinstance(e, OutputError) and isinstance(e.__cause__, BrokenPipeError):
            # The reader of our stdout (| head -1) went away mid-run: like any Unix tool, stop
            # with SIGPIPE's code; the video was not finished, so nothing was published.
            _stdout_closed()
            print(f"error: {_one_line(e)}; stopped, no output was written", file=sys.stderr)
            return 128 + signal.SIGPIPE
        if debug():
            traceback.print_exc()
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", signal.SIGINT))
        print(f"error: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        # Our stdout was closed after the work was done (| true, | head -1): nothing is lost.
        _stdout_closed()
        return 0
    except Exception as e:  # a bug: say so in one line, the traceback on request
        came = arrived()
        if came is not None:  # no bug: a signal, wrapped by what it interrupted
            print(f"error: interrupted ({signal.Signals(came).name})", file=sys.stderr)
            return 128 + came
        if debug():
            traceback.print_exc()
        print(
            f"error: unexpected {type(e).__name__}: {_one_line(e)} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _stdout_closed() -> None:
    """Stdout's reader is gone: point stdout at /dev/null, so that the flush at exit does not
    fail once more (Python would print 'Exception ignored ... BrokenPipeError')."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
