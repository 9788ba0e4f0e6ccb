"""``worker dashboard``'s pages: a read-only view of one queue.

- ``/``: the page (``worker/web/assets/dashboard.html``);
- ``/api/queue``: jobs per state, entries waiting per priority, the workers and their
  heartbeats (``presence``);
- ``/api/jobs?state=&limit=``: the newest jobs with their progress, errors and the URLs of
  their outputs;
- ``/jobs/<id>/video`` and ``/jobs/<id>/series``: a finished job's video (range requests, so
  the page's player seeks) and its per-label series for the chart (``worker.web.series``).

Files are looked up through the job's result, relative to this process's output root, and
every path part is checked (``child``): a job record naming ``../`` or a symlink out of the
root gets a 404 like a missing file. Inputs are shown redacted (an http input may carry a
token). Nothing here writes to Redis.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from worker.constants import STATES
from worker.messages import redact
from worker.queue.client import Queue
from worker.queue.connection import TRANSIENT, describe_url
from worker.queue.presence import read_workers
from worker.web import (
    Request,
    Response,
    Router,
    asset_routes,
    child,
    file_response,
    json_response,
    not_found,
    page,
)
from worker.web.series import read_series

__all__ = ["dashboard_routes", "output_path"]

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_JOBS_MAX = 500


def output_path(root: Path, relative: object) -> Path | None:
    """``root/relative`` for a POSIX path from a job's result, if it is a plain relative path
    that stays inside ``root`` (symlinks followed); None otherwise."""
    if not isinstance(relative, str) or not relative:
        return None
    rel = PurePosixPath(relative)
    if rel.is_absolute():
        return None
    return child(root, *rel.parts)


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the page shows it: inputs redacted, links to its outputs."""
    out = dict(job)
    if isinstance(out.get("input"), str):
        out["input"] = redact(out["input"])
    result = out.get("result")
    if isinstance(result, dict):
        result = dict(result)
        if isinstance(result.get("input"), str):
            result["input"] = redact(result["input"])
        out["result"] = result
        base = f"/jobs/{job['id']}"
        if isinstance(result.get("output"), str) and result["output"] != "none":
            out["video_url"] = f"{base}/video"
        if isinstance(result.get("results"), str):
            out["series_url"] = f"{base}/series"
    return out


class _Dashboard:
    """The dashboard's answers, over one queue and the output root its files lie in."""

    def __init__(self, queue: Queue, output_root: Path) -> None:
        self.queue = queue
        self.output_root = output_root
        self.where = describe_url(queue.settings.redis_url.get_secret_value())
        self.series_cache: dict[tuple[str, float], dict[str, Any]] = {}

    def unavailable(self, e: Exception) -> Response:
        return json_response({"error": f"Redis at {self.where}: unreachable ({e})"}, 503)

    def overview(self, _: Request) -> Response:
        q = self.queue
        try:
            return json_response(
                {
                    "queue": q.settings.queue,
                    "redis": self.where,
                    "depth": q.depth(),
                    "waiting": q.waiting(),
                    "workers": read_workers(q.client, q.keys),
                }
            )
        except TRANSIENT as e:
            return self.unavailable(e)

    def jobs(self, req: Request) -> Response:
        state = req.arg("state") or None
        if state is not None and state not in STATES:
            return Response(400, f"state: expected one of {', '.join(STATES)}\n".encode())
        try:
            limit = max(1, min(_JOBS_MAX, int(req.arg("limit") or 50)))
        except ValueError:
            return Response(400, b"limit: expected a whole number\n")
        try:
            found = self.queue.jobs(state, limit=limit)
        except TRANSIENT as e:
            return self.unavailable(e)
        return json_response({"jobs": [_public(j) for j in found]})

    def job_file(self, req: Request) -> Response:
        if len(req.segments) != 2 or not _JOB_ID.match(req.segments[0]):
            return not_found()
        job_id, what = req.segments
        try:
            found = self.queue.client.hget(self.queue.keys.job(job_id), "result")
        except TRANSIENT as e:
            return self.unavailable(e)
        try:
            result = json.loads(found) if found else None
        except json.JSONDecodeError:
            result = None
        if not isinstance(result, dict):
            return not_found("no outputs (yet)")
        if what == "video":
            path = output_path(self.output_root, result.get("output"))
            if path is None or path.suffix.lower() != ".mp4" or not path.is_file():
                return not_found("no video")
            return file_response(path, req, "video/mp4")
        if what == "series":
            colors = result.get("colors")
            return self.series(
                output_path(self.output_root, result.get("results")),
                colors if isinstance(colors, dict) else {},
            )
        return not_found()

    def series(self, path: Path | None, colors: dict[str, Any]) -> Response:
        """The chart's series, each label in the video's colour (``colors``, from the job)."""
        if path is None or not path.is_file():
            return not_found("no results")
        key = (str(path), path.stat().st_mtime)
        if key not in self.series_cache:
            if len(self.series_cache) > 64:
                self.series_cache.clear()
            self.series_cache[key] = read_series(path)
        data = self.series_cache[key]
        shown = {k: v for k, v in colors.items() if k in data.get("series", {})}
        return json_response({**data, "colors": shown})


def dashboard_routes(queue: Queue, output_root: Path) -> Router:
    d = _Dashboard(queue, output_root)
    routes = Router()
    asset_routes(routes)
    routes.add("/", lambda _: page("dashboard.html"))
    routes.add("/api/queue", d.overview)
    routes.add("/api/jobs", d.jobs)
    routes.add("/jobs/", d.job_file)
    routes.add("/healthz", lambda _: json_response({"ok": True}))
    return routes
