"""The video job: ``spec + context -> result``, what ``worker serve`` runs for each job.

Kept apart from the worker's loop (``worker.queue.serve``), which knows leases, signals,
presence and metrics but nothing of video: the loop hands a job to a handler and records what
it returns or raises. This one resolves the job's paths under the worker's roots (the model
through the model repository, confined to its root), fetches an http(s) input, lays the job's
options over the worker's own run description, runs the file (``worker.stages.run_file``)
and names the files in its result as the submitter does: relative to the roots.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from worker.models import fused_cache, resolve_model
from worker.models.repository import DEMO_NAMES, demo_model_path
from worker.queue.cache import ModelCache
from worker.queue.fetch import fetch
from worker.queue.handler import JobContext
from worker.queue.janitor import remove_parts
from worker.queue.jobs import JobSpec, outputs_for, resolve_input
from worker.roots import resolve_inside
from worker.settings import Settings
from worker.stages import run_file
from worker.urls import redact_urls

__all__ = ["VideoJobs"]


class VideoJobs:
    """Runs video jobs with this worker's settings: one model cache per slot."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run = settings.run
        self.caches = [
            ModelCache(
                settings.model_cache,
                provider=settings.provider,
                threads=settings.threads,
                lanes=settings.lanes_on("cpu"),
                cache_dir=fused_cache.cache_dir_for(settings),
            )
            for _ in range(settings.concurrency)
        ]
        roots = (settings.input_root, settings.output_root, settings.model_root)
        self._roots = sorted({r.resolve() for r in roots}, key=lambda r: -len(str(r)))
        # A model met for the first time is parsed and its fused graph built with onnx, whose
        # import holds the GIL for about a second here (ml_dtypes' extension). Inside a job it
        # starved the lease's heartbeat thread, and on a loaded machine the lease lapsed and
        # another worker took the job over. A worker is long-lived: import it now, before it
        # holds any lease (a one-off command imports it only when it has to build).
        import worker.models.fuse  # noqa: F401

    def shown(self, text: str) -> str:
        """``text`` with the worker's absolute root folders left out, so a job names its files
        as the submitter does (relative to the roots), and no URL's credentials in it."""
        for root in self._roots:
            text = text.replace(f"{root}/", "")
        return redact_urls(text)

    def __call__(self, spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
        s = self.settings
        scratch: Path | None = None
        try:
            source = resolve_input(spec.input, s.input_root, s.url_schemes)
            video, results = outputs_for(spec, s.output_root)
            model_path = (
                resolve_model(spec.model, s.model_root, confined=True)
                if spec.model
                else demo_model_path(spec.task or "segment")
            )
            card = resolve_inside(spec.card, s.model_root, "card") if spec.card else None
            options = dict(spec.options or {})
            card_fields = options.pop("card", None)
            # A worker runs jobs by the thousand: a job's outputs stay the video and the
            # results, unless it asks for its summary picture.
            run = self.run.overlay({"picture": False, **options})
            if isinstance(source, str):
                source = fetch(source, schemes=s.url_schemes, max_bytes=s.download_max_mb << 20)
                scratch = source.parent
            remove_parts([video, results])  # an earlier attempt's, killed mid-write
            model = self.caches[ctx.slot].get(
                model_path,
                card=card,
                task=spec.task,
                overrides=card_fields,
                overrides_from=f"job {spec.id}: card options",
            )
            summary = run_file(
                source,
                model,
                run,
                output=video,
                results=results,
                max_frames=spec.max_frames,
                on_frame=ctx.on_frame,
                cancel=ctx.cancel,
                before_commit=ctx.before_commit,
            )
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        result = summary.to_dict()
        # Files as the job names them, relative to the roots, not the worker's own paths.
        out = s.output_root.resolve()
        result["input"] = spec.input
        result["output"] = video.relative_to(out).as_posix()
        result["results"] = results.relative_to(out).as_posix()
        result["model"] = spec.model or f"built-in:{DEMO_NAMES[spec.task or 'segment']}"
        # The video's colour of each label it found: the dashboard's chart uses the same.
        result["colors"] = {
            label: "#{:02x}{:02x}{:02x}".format(*model.color(i))
            for i, label in enumerate(model.labels)
            if label in result.get("totals", {})
        }
        shown: dict[str, Any] = json.loads(self.shown(json.dumps(result)))
        return shown
