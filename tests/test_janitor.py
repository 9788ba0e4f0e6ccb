"""``worker.queue.janitor``: what killed workers leave behind is cleaned up (temporaries of
jobs that end without a rerun, cancels of jobs whose holder is gone), against a real
redis-server and real ``worker`` processes killed with SIGKILL."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from worker.queue.client import Queue
from worker.queue.leases import Consumer, Lease
from worker.testing import (
    Rig,
    make_slow_model,
    mid_job,
    state_of,
    wait_for,
)


def killed_mid_write(rig: Rig, **settings: Any) -> tuple[Queue, str]:
    """A long job whose worker was SIGKILLed while writing: its temporaries are on disk."""
    q = rig.queue()
    job_id, _ = q.submit(q.make_spec(input="long.mp4"))
    a = rig.worker("--burst", name="a", **settings)
    wait_for(lambda: mid_job(q, job_id) and rig.parts(), "A to be mid-write")
    a.signal(signal.SIGKILL)
    a.wait()
    assert len(rig.parts()) == 2  # the video and the results, half-written
    return q, job_id


@pytest.mark.parametrize("ending", ["cancelled", "dead", "deadline"])
def test_a_killed_workers_temporaries_go_when_its_job_ends_without_a_rerun(
    rig: Rig, ending: str
) -> None:
    q, job_id = killed_mid_write(rig)
    settings: dict[str, Any] = {}
    if ending == "cancelled":
        assert json.loads(rig.cli("cancel", job_id).stdout)["state"] == "cancelling"
    elif ending == "dead":
        settings["max_attempts"] = 1  # the killed attempt was the last one
    else:
        secs, _ = q.client.time()
        q.client.hset(q.keys.job(job_id), "deadline", f"{secs - 1:.6f}")
    b = rig.worker("--burst", name="b", **settings)
    assert b.wait(60) == 0, b.text()
    st = q.status(job_id)
    assert st["state"] == {"deadline": "failed"}.get(ending, ending), st
    assert st["attempts"] == 1  # it never ran again
    assert rig.parts() == []
    assert rig.outputs(job_id) == []


def test_the_janitor_sweeps_temporaries_of_jobs_that_are_not_running(rig: Rig) -> None:
    from worker.queue.janitor import Janitor

    q, job_id = killed_mid_write(rig)
    janitor = Janitor(rig.queue(lease_s=0.5), "sweeper")
    # Still "running" as far as Redis knows (its lease has not run out): nothing is touched.
    assert janitor.sweep()["temporaries"] == 0 and len(rig.parts()) == 2
    # The job ends by a path no worker cleans after (here: a thief holding it fails it).
    thief = Consumer(rig.queue(lease_s=0.001), "thief")
    lease = thief.start(wait_for(thief.take, "the takeover"))
    assert isinstance(lease, Lease) and lease.finish("failed", "by the test") == "failed"
    # Untouched for the (0.5 s) quiet period: there is no writer left. Swept.
    removed: list[int] = []

    def swept_both() -> bool:
        removed.append(janitor.sweep()["temporaries"])
        return sum(removed) == 2

    wait_for(swept_both, "the sweep to remove both", timeout=10)
    assert rig.parts() == [] and state_of(q, job_id) == "failed"


def test_cancelling_a_dead_workers_job_needs_no_free_slot(rig: Rig) -> None:
    q, job_id = killed_mid_write(rig)
    # B's one slot is busy for far longer than the test: ~0.1 s of model per frame.
    make_slow_model(rig.root / "models" / "slow.onnx")
    busy_id, _ = q.submit(q.make_spec(input="long.mp4", model="slow.onnx"))
    b = rig.worker(name="b", concurrency=1, grace_s=0)
    wait_for(lambda: mid_job(q, busy_id), "B to be busy with its own job")
    asked = time.monotonic()
    assert json.loads(rig.cli("cancel", job_id).stdout)["state"] == "cancelling"
    wait_for(lambda: state_of(q, job_id) == "cancelled", "the cancel", timeout=30)
    took = time.monotonic() - asked
    assert state_of(q, busy_id) == "running"  # B's slot never freed up meanwhile
    (how,) = [e["detail"] for e in q.events(job_id) if e["event"] == "cancelled"]
    assert how == "its worker stopped renewing the lease"
    lease = float(rig.env["WORKER_LEASE_S"])
    assert took < lease + 2.0, took  # within a lease (the holder was already silent)
    # The janitor publishes the cancel (one script) and then removes the temporaries: a
    # reader may see the state a moment before the files go.
    wait_for(lambda: all(busy_id in p for p in rig.parts()), "the dead worker's temporaries to go")
    b.signal(signal.SIGTERM)
    b.wait(120)
