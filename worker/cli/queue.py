"""The queue's subcommands: serve, submit, status, cancel, jobs, check.

Registered by ``worker.cli`` (``add_queue_parsers`` and ``QUEUE_COMMANDS``). Kept import-light:
Redis, the models and the pipeline load only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from worker.cli.flags import add_pipeline_flag
from worker.constants import PRIORITIES, STATES
from worker.settings import Settings, load_settings

__all__ = ["QUEUE_COMMANDS", "add_queue_parsers"]


def add_queue_parsers(sub: Any) -> None:
    s = sub.add_parser("serve", help="take jobs from the Redis queue and run them")
    s.add_argument("--burst", action="store_true", default=None, help="drain the queue, exit")
    s.add_argument("--concurrency", type=int, help="jobs run at once (default 1)")

    j = sub.add_parser("submit", help="queue a job; prints its id")
    add_pipeline_flag(j, "the job (input, model, outputs, look, card overrides)")
    j.add_argument("--input", help="video under the input root, or a URL")
    j.add_argument("--model", help="model name or .onnx path in the model root (default: demo)")
    j.add_argument("--card", help="model card under the model root")
    j.add_argument("--task", choices=["segment", "classify"])
    j.add_argument("--output", help="MP4 under the output root (default: <job id>/<input>.mp4)")
    j.add_argument("--priority", choices=PRIORITIES, default="normal")
    j.add_argument("--key", help="idempotency key: the same key again returns the same job")
    j.add_argument("--deadline", type=float, help="seconds from now after which it must not run")
    j.add_argument("--max-frames", type=int, dest="max_frames", help="stop after N frames")

    t = sub.add_parser("status", help="a job's state and progress as JSON")
    t.add_argument("job_id")
    t.add_argument("--watch", action="store_true", help="a line per change until it ends")

    c = sub.add_parser("cancel", help="cancel a queued or running job")
    c.add_argument("job_id")

    ls = sub.add_parser("jobs", help="list jobs as JSON lines, most recent first")
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--limit", type=int, default=100)

    sub.add_parser("check", help="exit 0 if this host's worker heartbeat is fresh (liveness)")


def _settings(**cli: Any) -> Settings:
    return load_settings(**cli)


def _queue(settings: Settings) -> Any:
    from worker.queue.client import Queue

    return Queue(settings)


def _print(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    from worker.queue.serve import Server

    settings = _settings(burst=args.burst, concurrency=args.concurrency)
    # A service's log: what it took, finished, lost. The CLI's default level is warnings only.
    logging.getLogger("worker").setLevel(logging.INFO)
    return Server(settings).serve()


def _job_options(settings: Settings) -> Any:
    """What the pipeline file says about how to process the video, as the job's options."""
    from worker.errors import JobError
    from worker.models.card import load_card
    from worker.pipeline_file import read_pipeline
    from worker.queue.jobs import JOB_OPTIONS, JobOptions

    if settings.pipeline is None:
        return None
    in_file = read_pipeline(settings.pipeline)
    chosen = {k: getattr(settings, k) for k in JOB_OPTIONS if k in in_file}
    if "card_overrides" in chosen:
        chosen["card"] = chosen.pop("card_overrides") or None
        # Checked here, as a worker would: a bad field fails the submit, not the job.
        load_card(None, chosen["card"], overrides_from=f"pipeline '{settings.pipeline}': [card]")
    try:
        return JobOptions(**chosen) if chosen else None
    except ValueError as e:
        raise JobError(f"pipeline '{settings.pipeline}': {e}") from None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _cmd_submit(args: argparse.Namespace) -> int:
    from worker.errors import JobError
    from worker.queue.connection import redis_errors

    settings = load_settings(args.pipeline)
    q = _queue(settings)
    if args.deadline is not None and args.deadline <= 0:
        raise JobError(f"--deadline {args.deadline:g}: expected a positive number of seconds")
    source = args.input or _text(settings.input)
    if source is None:
        raise JobError("--input is required (or 'input' in the --pipeline file)")
    spec = q.make_spec(
        input=source,
        output=args.output or _text(settings.output),
        model=args.model or _text(settings.model),
        card=args.card or _text(settings.card),
        task=args.task or settings.task,
        max_frames=args.max_frames or settings.max_frames,
        priority=args.priority,
        deadline_s=args.deadline,
        key=args.key,
        options=_job_options(settings),
    )
    with redis_errors(settings):
        job_id, created = q.submit(spec)
    if not created:
        print(f"note: key '{args.key}' already names job {job_id}", file=sys.stderr)
    print(job_id)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from worker.queue.connection import redis_errors

    settings = _settings()
    q = _queue(settings)
    with redis_errors(settings):
        if not args.watch:
            _print(q.status(args.job_id))
            return 0
        last: dict[str, Any] = {}
        for last in q.watch(args.job_id):
            _print(last)
    # Watching ends at a final state; its exit code says which, for scripts: 0 only if done.
    return 0 if last.get("state") == "done" else 1


def _cmd_cancel(args: argparse.Namespace) -> int:
    from worker.queue.connection import redis_errors

    settings = _settings()
    q = _queue(settings)
    with redis_errors(settings):
        state = q.cancel(args.job_id)
    _print({"id": args.job_id, "state": state})
    return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    from worker.queue.connection import redis_errors

    settings = _settings()
    q = _queue(settings)
    with redis_errors(settings):
        shown = set()
        for job in q.jobs(args.state, limit=args.limit):
            _print(job)
            shown.add(job["id"])
        if args.state == "dead":
            # Payloads that were never a valid job have no job record, only a dead letter.
            for letter in q.dead_letters(args.limit):
                if letter.get("id") not in shown:
                    _print({**letter, "id": letter.get("id") or None, "state": "dead"})
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from worker.queue.metrics import read_heartbeat

    settings = _settings()
    state = read_heartbeat(settings.heartbeat_file, settings.lease_s)
    running = state.get("running") or []
    print(
        f"ok: worker {state.get('worker')} (pid {state.get('pid')}) heartbeat "
        f"{state['age_s']:.1f} s ago, redis {state.get('redis')}, {len(running)} job(s) running"
    )
    return 0


#: Merged into ``worker.cli.COMMANDS``.
QUEUE_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _cmd_serve,
    "submit": _cmd_submit,
    "status": _cmd_status,
    "cancel": _cmd_cancel,
    "jobs": _cmd_jobs,
    "check": _cmd_check,
}
