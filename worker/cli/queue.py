"""The queue's subcommands: serve, submit, status, cancel, jobs, requeue, purge, check.

Registered by ``worker.cli`` (``add_queue_parsers`` and ``QUEUE_COMMANDS``). Import-light:
only ``serve`` loads the models and the stages (ONNX Runtime, OpenCV, PyAV, numpy); the other
commands load Redis and pydantic, so a probe running ``worker check`` every 30 s or a script
polling ``worker status`` costs a fraction of a second (a test checks ``sys.modules``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from worker.cli.flags import (
    ANALYTICS,
    ENCODE,
    FILE_OUTPUTS,
    LOOK,
    Flag,
    add_flags,
    add_pipeline_flag,
    settings_args,
)
from worker.constants import PRIORITIES, STATES, TERMINAL
from worker.description import PER_INPUT, section_of
from worker.errors import JobError
from worker.settings import Settings, load_settings

__all__ = ["QUEUE_COMMANDS", "add_queue_parsers"]


#: What a job is: its input, outputs and model, named under the worker's roots.
JOB = (
    Flag("input", type=str, help="video under the input root, or a URL"),
    Flag("model", type=str, help="model name or .onnx path in the model root (default: demo)"),
    Flag("card", type=str, help="model card under the model root"),
    Flag("task"),
    Flag("output", type=str, help="MP4 under the output root (default: <job id>/<input>.mp4)"),
    Flag("max_frames"),
)
#: Flags of ``worker submit``: the job, and how its video is processed (these travel with it).
_SUBMIT_GROUPS = (JOB, LOOK, ENCODE, ANALYTICS, FILE_OUTPUTS)


def add_queue_parsers(sub: Any) -> None:
    s = sub.add_parser("serve", help="take jobs from the Redis queue and run them")
    s.add_argument("--burst", action="store_true", default=None, help="drain the queue, exit")
    s.add_argument("--concurrency", type=int, help="jobs run at once (default 1)")

    j = sub.add_parser("submit", help="queue a job; prints its id")
    add_pipeline_flag(j, "the job (input, model, outputs, look, card overrides)")
    add_flags(j, *_SUBMIT_GROUPS)
    j.add_argument("--priority", choices=PRIORITIES, default="normal")
    j.add_argument("--key", help="idempotency key: the same key again returns the same job")
    j.add_argument("--deadline", type=float, help="seconds from now after which it must not run")

    t = sub.add_parser("status", help="a job's state and progress as JSON")
    t.add_argument("job_id")
    t.add_argument("--watch", action="store_true", help="a line per change until it ends")

    c = sub.add_parser("cancel", help="cancel a queued or running job")
    c.add_argument("job_id")

    ls = sub.add_parser("jobs", help="list jobs as JSON lines, most recent first")
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--limit", type=int, default=100, help="jobs per page (100)")
    ls.add_argument("--offset", type=int, default=0, help="skip this many first (next pages)")

    rq = sub.add_parser("requeue", help="run failed, dead or cancelled jobs again")
    rq.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    rq.add_argument("--dead", action="store_true", help="every dead job (the dead-letter list)")

    pg = sub.add_parser("purge", help="delete finished jobs from the queue (their files stay)")
    pg.add_argument("--state", required=True, choices=sorted(TERMINAL))
    pg.add_argument(
        "--older-than", dest="older_than", default="0s", metavar="AGE",
        help="only jobs finished this long ago: 30s, 15m, 12h, 7d (default: all)",
    )  # fmt: skip

    sub.add_parser("check", help="exit 0 if this host's worker heartbeat is fresh (liveness)")

    d = sub.add_parser("dashboard", help="read-only web page over the queue, jobs and workers")
    d.add_argument("--host", dest="dashboard_host", help="listen address (127.0.0.1)")
    d.add_argument("--port", type=int, dest="dashboard_port", help="listen port (9410)")


def _settings(**cli: Any) -> Settings:
    return load_settings(**cli)


def _queue(settings: Settings) -> Any:
    from worker.queue.client import Queue

    return Queue(settings)


def _print(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    from worker.queue.serve import Server
    from worker.queue.video_job import VideoJobs

    settings = _settings(burst=args.burst, concurrency=args.concurrency)
    # A service's log: what it took, finished, lost. The CLI's default level is warnings only.
    logging.getLogger("worker").setLevel(logging.INFO)
    return Server(settings, VideoJobs(settings)).serve()


def job_options(settings: Settings) -> dict[str, Any] | None:
    """What the submitter's settings (flags, pipeline file, environment) say of how the video
    is processed: the options that travel with the job, checked here as a worker would check
    them, so that a bad one fails the submit and not the job."""
    from worker.models.card import load_card
    from worker.queue.jobs import check_options

    where = f"pipeline '{settings.pipeline}'" if settings.pipeline else "options"
    chosen: dict[str, Any] = {
        k: getattr(settings, k)
        for k in sorted(settings.model_fields_set)
        if section_of(k) in PER_INPUT
    }
    if "card_overrides" in settings.model_fields_set and settings.card_overrides:
        chosen["card"] = settings.card_overrides
        load_card(None, chosen["card"], overrides_from=f"{where}: [card]")
    try:
        return check_options(chosen, where) or None
    except ValueError as e:
        raise JobError(str(e)) from None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _cmd_submit(args: argparse.Namespace) -> int:
    from worker.queue.connection import redis_errors

    settings = load_settings(args.pipeline, **settings_args(args, *_SUBMIT_GROUPS))
    q = _queue(settings)
    if args.deadline is not None and not 0 < args.deadline < float("inf"):
        raise JobError(f"--deadline {args.deadline:g}: expected a positive number of seconds")
    source = _text(settings.input)
    if source is None:
        raise JobError("--input is required (or 'input' in the --pipeline file)")
    spec = q.make_spec(
        input=source,
        output=_text(settings.output),
        model=_text(settings.model),
        card=_text(settings.card),
        task=settings.task,
        max_frames=settings.max_frames,
        priority=args.priority,
        deadline_s=args.deadline,
        key=args.key,
        options=job_options(settings),
    )
    with redis_errors(settings):
        job_id, created = q.submit(spec)
    if not created:
        print(f"note: key '{args.key}' already names job {job_id}", file=sys.stderr)
    print(job_id)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from worker.queue.connection import describe_url, redis_errors

    settings = _settings()
    q = _queue(settings)
    where = describe_url(settings.redis_url.get_secret_value())

    def outage(e: Exception) -> None:
        print(f"note: Redis at {where} unavailable ({e}); still watching, retrying with "
              "backoff", file=sys.stderr, flush=True)  # fmt: skip

    with redis_errors(settings):
        if not args.watch:
            _print(q.status(args.job_id))
            return 0
        last: dict[str, Any] = {}
        for last in q.watch(args.job_id, on_outage=outage):
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


#: The most jobs one page of ``worker jobs`` lists (more: the next page, with --offset).
_MAX_PAGE = 10_000


def _cmd_jobs(args: argparse.Namespace) -> int:
    from worker.queue.connection import redis_errors

    if not 1 <= args.limit <= _MAX_PAGE:
        raise JobError(
            f"--limit {args.limit}: expected 1 to {_MAX_PAGE} jobs a page (the next page: --offset)"
        )
    if not 0 <= args.offset <= 10**12:
        raise JobError(f"--offset {args.offset}: expected 0 or more, at most 10^12")
    settings = _settings()
    q = _queue(settings)
    with redis_errors(settings):
        jobs = q.jobs(args.state, limit=args.limit, offset=args.offset)
        for job in jobs:
            _print(job)
        if args.state == "dead":
            # Payloads that were never a valid job have no job record, only a dead letter
            # (a letter of a job that was requeued since is not dead any more).
            for letter in q.dead_letters(args.limit, args.offset):
                job_id = letter.get("id") or None
                if job_id is None or q.client.hget(q.keys.job(job_id), "state") is None:
                    _print({**letter, "id": job_id, "state": "dead"})
    return 0


def _cmd_requeue(args: argparse.Namespace) -> int:
    from worker.queue.connection import redis_errors

    settings = _settings()
    q = _queue(settings)
    if not args.job_ids and not args.dead:
        raise JobError("requeue: give job ids, or --dead for every dead job")
    with redis_errors(settings):
        ids = list(args.job_ids)
        if args.dead:
            ids += [j["id"] for j in q.jobs("dead", limit=1_000_000) if j["id"] not in ids]
        refused = 0
        for job_id in ids:
            state = q.requeue(job_id)
            _print({"id": job_id, "state": state})
            refused += state != "queued"
    if refused:
        print(f"note: {refused} job(s) were not failed, dead or cancelled; left as they are",
              file=sys.stderr)  # fmt: skip
    return 0


def _age(text: str) -> float:
    """``30s``, ``15m``, ``12h``, ``7d`` (or plain seconds) -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise JobError(f"--older-than '{text}': expected an age like 30s, 15m, 12h or 7d")
    return seconds


def _cmd_purge(args: argparse.Namespace) -> int:
    from worker.queue.connection import redis_errors

    settings = _settings()
    q = _queue(settings)
    older = _age(args.older_than)
    with redis_errors(settings):
        n = q.purge(args.state, older_than_s=older)
    _print({"state": args.state, "purged": n})
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    import threading

    from worker.cli.common import pages_auth
    from worker.queue.connection import TRANSIENT, describe_url
    from worker.queue.dashboard import dashboard_routes
    from worker.signals import stop_on_signals
    from worker.web import WebServer

    settings = _settings(dashboard_host=args.dashboard_host, dashboard_port=args.dashboard_port)
    q = _queue(settings)
    where = describe_url(settings.redis_url.get_secret_value())
    try:
        q.client.ping()
    except TRANSIENT as e:  # the page says so too, and recovers when Redis is back
        print(f"note: Redis at {where} unreachable for now ({e})", file=sys.stderr)
    auth = pages_auth(settings, settings.dashboard_host, "--host, WORKER_DASHBOARD_HOST")
    server = WebServer(
        dashboard_routes(q, settings.output_root),
        settings.dashboard_port,
        settings.dashboard_host,
        what="setting WORKER_DASHBOARD_HOST/WORKER_DASHBOARD_PORT",
        auth=auth,
    )
    host = settings.dashboard_host
    shown = f"[{host}]" if ":" in host else (host or "localhost")
    print(
        f"dashboard: http://{shown}:{server.port}/ (queue '{settings.queue}' on {where}); "
        "Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            stop.wait()
    finally:
        server.close()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from worker.queue.metrics import read_heartbeats

    settings = _settings()
    for state in read_heartbeats(settings.heartbeat_file, settings.heartbeat_dir, settings.lease_s):
        running = state.get("running") or []
        print(
            f"ok: worker {state.get('worker')} (pid {state.get('pid')}) heartbeat "
            f"{state['age_s']:.1f} s ago, redis {state.get('redis')}, "
            f"{len(running)} job(s) running"
        )
    return 0


#: Merged into ``worker.cli.COMMANDS``.
QUEUE_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _cmd_serve,
    "submit": _cmd_submit,
    "status": _cmd_status,
    "cancel": _cmd_cancel,
    "jobs": _cmd_jobs,
    "requeue": _cmd_requeue,
    "purge": _cmd_purge,
    "check": _cmd_check,
    "dashboard": _cmd_dashboard,
}
