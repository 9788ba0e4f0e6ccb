"""The queue as an operator breaks it (issue 11): poison bytes, killed workers whose jobs end
without a rerun, Redis away for longer than a lease, another job's outputs, stale keys.

Each test reproduces the real trigger against a real redis-server and real ``worker``
processes: raw bytes written with a bytes client, SIGKILL, Redis killed and restarted on
its AOF. Lease 2 s and heartbeat 0.2 s (``queue_harness.worker_env``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from factory import make_model
from worker.constants import GROUP
from worker.queue.client import Queue
from worker.queue.leases import Consumer, Lease
from worker.testing import Rig, done_events, make_slow_model, state_of, wait_for, worker_cli


def mid_job(q: Queue, job_id: str) -> dict[str, Any] | None:
    st = q.status(job_id)
    done = (st["progress"] or {}).get("done", 0)
    return st if st["state"] == "running" and done > 0 else None


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


# ------------------------------------------------------------------------- poison bytes


def test_bytes_that_are_not_utf8_go_to_the_dead_letters_and_the_queue_goes_on(rig: Rig) -> None:
    # Before: UnicodeDecodeError in the consumer, `worker serve` exit 1, and every worker
    # after it died on its first claim of the entry (a crash loop; jobs behind it stuck).
    q = rig.queue()
    q.ensure_groups()
    stream = q.keys.stream("normal")
    raw = redis.Redis.from_url(rig.redis.url)  # bytes in, bytes out: as redis-cli -x sends
    raw.xadd(stream, {b"job": b'\xff\xfe{"id": 1}'})
    # One a dead worker had already read: it is pending and will be claimed after a lease.
    raw.xadd(stream, {b"\xc3\x28": b"value"})
    raw.xreadgroup(GROUP, "ghost", {stream: ">"}, count=1)
    raw.xadd(stream, {b"job": b"\xc3\x28"})
    good_id, _ = q.submit(q.make_spec(input="a.mp4"))
    w = rig.worker("--burst")
    assert w.wait(60) == 0, w.text()
    assert state_of(q, good_id) == "done"
    letters = q.dead_letters()
    assert len(letters) == 3, letters
    errors = " | ".join(str(d["error"]) for d in letters)
    assert errors.count("not UTF-8") == 3 and "0xff" in errors and "0xc3" in errors
    kept = [json.loads(d["raw"]) for d in letters]
    assert {"job": '\\xff\\xfe{"id": 1}'} in kept  # the bytes, shown escaped
    assert raw.xlen(stream) == 0 and raw.xpending(stream, GROUP)["pending"] == 0
    listed = rig.cli("jobs", "--state", "dead")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3, listed.stderr


# ------------------------------------------------------------------------- temporaries


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


# ------------------------------------------------------------------------- outages


def test_an_outage_longer_than_the_lease_does_not_restart_a_running_job(rig: Rig) -> None:
    # Before: the pending entry's idle clock ran while Redis was down; once it was back, an
    # idle worker that reconnected before the holder claimed the live job and the holder
    # stopped: the job restarted from frame 0. Which worker reconnects first is chance (each
    # backs off with jitter), so three idle workers and two outages: on the old code the
    # holder is first both times in about 1 run of 16.
    q = rig.queue()
    # ~0.1 s of model per frame: the job outlasts both outages.
    make_slow_model(rig.root / "models" / "slow.onnx")
    job_id, _ = q.submit(q.make_spec(input="long.mp4", model="slow.onnx", max_frames=200))
    a = rig.worker(name="a")
    wait_for(lambda: mid_job(q, job_id), "A to be mid-job")
    idle = [rig.worker(name=f"idle{i}") for i in range(3)]
    wait_for(lambda: all("queue 'video'" in w.text() for w in idle), "the idle workers")
    lease = float(rig.env["WORKER_LEASE_S"])
    for outage in (1, 2):
        rig.redis.kill(signal.SIGKILL)
        down = time.monotonic()
        wait_for(lambda n=outage: a.text().count("unavailable") == n, "A to notice")  # type: ignore[misc]
        wait_for(lambda d=down: time.monotonic() - d >= 2 * lease, "twice the lease", poll=0.1)  # type: ignore[misc]
        rig.redis.start()
        q = rig.queue()
        if outage == 1:
            wait_for(lambda: a.text().count("is back") == 1, "A to be back")
            assert q.status(job_id)["attempts"] == 1, "taken over after the first outage"
            assert mid_job(q, job_id), "the job should still be running for the second outage"
    wait_for(lambda: state_of(q, job_id) == "done", "the job to finish", timeout=120)
    st = q.status(job_id)
    logs = a.text() + "".join(w.text() for w in idle)
    assert st["attempts"] == 1, logs
    assert [e["event"] for e in q.events(job_id)] == ["submitted", "started", "done"]
    assert "took it over" not in logs
    assert done_events(q) == {job_id: 1}
    for w in (a, *idle):
        w.signal(signal.SIGTERM)
        assert w.wait(60) == 0, w.text()


def test_status_watch_rides_out_a_redis_restart_and_exits_by_the_outcome(rig: Rig) -> None:
    q = rig.queue()
    job_id, _ = q.submit(q.make_spec(input="long.mp4"))
    w = rig.worker("--burst")
    watch = subprocess.Popen(
        [sys.executable, "-m", "worker", "status", job_id, "--watch"],
        cwd=rig.root, env=rig.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: mid_job(q, job_id), "the job to be mid-run")
        rig.redis.kill(signal.SIGKILL)
        down = time.monotonic()
        wait_for(lambda: "unavailable" in w.text(), "the worker to notice")
        # The outage itself: long enough that the watcher's polls (every 0.5 s) meet it.
        wait_for(lambda: time.monotonic() - down >= 2.0, "a 2 s outage", poll=0.1)
        rig.redis.start()
        out, err = watch.communicate(timeout=120)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err  # before: 1, with a Redis error, although it completed
    assert json.loads(out.splitlines()[-1])["state"] == "done"
    notes = [line for line in err.splitlines() if line]
    assert len(notes) == 1 and "unavailable" in notes[0] and "still watching" in notes[0], err
    assert w.wait(60) == 0, w.text()


# ------------------------------------------------------------------------- whose outputs


def test_a_job_cannot_overwrite_another_jobs_output(rig: Rig) -> None:
    # Before: the second job replaced the first one's file while its result still named it.
    q = rig.queue()
    first, _ = q.submit(q.make_spec(input="a.mp4", output="shared/a.mp4"))
    w = rig.worker("--burst")
    assert w.wait(60) == 0, w.text()
    before = (rig.out / "shared" / "a.mp4").read_bytes()
    again = rig.cli("submit", "--input", "long.mp4", "--output", "shared/a.mp4")
    assert again.returncode == 2 and "error: output 'shared/a.mp4'" in again.stderr
    # Named through the other job's folder: the same file, the same answer.
    sneaky = rig.cli("submit", "--input", "long.mp4", "--output", f"{first}/../shared/a.mp4")
    assert sneaky.returncode == 2 and "error: output" in sneaky.stderr
    # Not visible to this submitter (another machine): refused by the claim in Redis.
    blind = rig.queue(output_root=rig.root / "not-mounted-here")
    (rig.root / "not-mounted-here").mkdir()
    spec = blind.make_spec(input="a.mp4", output="x/b.mp4")
    blind.submit(spec)
    with pytest.raises(Exception, match=f"belongs to job {spec.id}"):
        blind.submit(blind.make_spec(input="a.mp4", output="x/b.mp4"))
    assert (rig.out / "shared" / "a.mp4").read_bytes() == before
    assert q.status(first)["result"]["output"] == "shared/a.mp4"  # relative to the root


def test_a_failed_jobs_output_and_key_are_free_again(rig: Rig) -> None:
    q = rig.queue()
    job_id = rig.cli("submit", "--input", "a.mp4", "--key", "k1", "--output", "o/a.mp4")
    job_id_text = job_id.stdout.strip()
    same = rig.cli("submit", "--input", "a.mp4", "--key", "k1", "--output", "o/a.mp4")
    assert same.returncode == 0 and same.stdout.strip() == job_id_text
    other = rig.cli("submit", "--input", "long.mp4", "--key", "k1")
    assert other.returncode == 2 and "already names job" in other.stderr  # before: exit 0
    # The job fails (here: a consumer of the test's takes it and fails it).
    c = Consumer(q, "test")
    lease = c.start(wait_for(c.take, "the job"))
    assert isinstance(lease, Lease) and lease.finish("failed", "by the test") == "failed"
    renewed = rig.cli("submit", "--input", "long.mp4", "--key", "k1", "--output", "o/a.mp4")
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() != job_id_text  # before: the failed job, for 7 days
    assert state_of(q, renewed.stdout.strip()) == "queued"


# ------------------------------------------------------------------------- dead holders


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
    assert rig.parts() == [] or all(busy_id in p for p in rig.parts())
    b.signal(signal.SIGTERM)
    b.wait(120)


# ------------------------------------------------------------------------- light commands


HEAVY = ("onnxruntime", "cv2", "av", "numpy")


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "--input", "a.mp4"],
        ["status", "0" * 32],
        ["cancel", "0" * 32],
        ["jobs"],
        ["requeue", "--dead"],
        ["purge", "--state", "done"],
        ["check"],
    ],
)
def test_queue_commands_load_nothing_heavy(rig: Rig, args: list[str]) -> None:
    code = (
        "import sys; from worker.cli import main; rc = main(sys.argv[1:]); "
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=rig.root, env=rig.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_requeue_purge_and_pages(rig: Rig) -> None:
    q = rig.queue()
    ids = [q.submit(q.make_spec(input="a.mp4"))[0] for _ in range(3)]
    bad, _ = q.submit(q.make_spec(input="a.mp4", model="nope.onnx"))
    w = rig.worker("--burst")
    assert w.wait(60) == 0, w.text()
    st = q.status(bad)
    assert st["state"] == "failed"
    assert str(rig.root) not in st["error"] and "'nope.onnx'" in st["error"]  # relative
    # Pages: most recent first, none twice.
    page1 = [json.loads(x)["id"] for x in rig.cli("jobs", "--limit", "2").stdout.splitlines()]
    page2 = [
        json.loads(x)["id"]
        for x in rig.cli("jobs", "--limit", "2", "--offset", "2").stdout.splitlines()
    ]
    assert len(page1) == len(page2) == 2 and set(page1) | set(page2) == {*ids, bad}
    # The model appears; the job runs again from scratch.
    from factory import make_model

    make_model(rig.root / "models" / "nope.onnx", classes=3)
    again = rig.cli("requeue", bad, ids[0])
    assert again.returncode == 0, again.stderr
    states = [json.loads(x)["state"] for x in again.stdout.splitlines()]
    assert states == ["queued", "done"] and "left as they are" in again.stderr
    w = rig.worker("--burst")
    assert w.wait(60) == 0, w.text()
    assert q.status(bad)["state"] == "done" and q.status(bad)["attempts"] == 1
    purged = rig.cli("purge", "--state", "done", "--older-than", "1d")
    assert json.loads(purged.stdout) == {"state": "done", "purged": 0}
    purged = rig.cli("purge", "--state", "done")
    assert json.loads(purged.stdout) == {"state": "done", "purged": 4}
    assert q.depth()["done"] == 0 and not q.client.exists(q.keys.job(bad))
    assert (rig.out / ids[1] / "a.mp4").is_file()  # the files stay
    assert rig.cli("purge", "--state", "done", "--older-than", "soon").returncode == 2


def test_finished_jobs_expire_and_leave_the_queue_as_if_empty(rig: Rig) -> None:
    from worker.queue.janitor import Janitor

    q = rig.queue(result_ttl_s=1, dead_ttl_s=1)
    baseline = set(q.client.keys(f"{q.keys.prefix}*"))
    q.ensure_groups()
    ok, _ = q.submit(q.make_spec(input="a.mp4", key="once"))
    q.client.xadd(q.keys.stream("normal"), {"junk": "not a job"})
    w = rig.worker("--burst", result_ttl_s=1, dead_ttl_s=1, name="old")
    assert w.wait(60) == 0, w.text()
    assert state_of(q, ok) == "done" and len(q.dead_letters()) == 1
    assert 0 < q.client.ttl(q.keys.job(ok)) <= 1
    wait_for(lambda: not q.client.exists(q.keys.job(ok)), "the job to expire", timeout=10)
    wait_for(lambda: q.client.time()[0] >= int(q.dead_letters()[0]["at"]) + 2, "letters to age")
    janitor = Janitor(q, "janitor", consumer_idle_ms=0)
    done = janitor.sweep()
    assert done["ids"] == 1 and done["dead_letters"] == 1 and done["consumers"] >= 1, done
    assert q.depth() == dict.fromkeys(q.depth(), 0)
    assert rig.cli("jobs").stdout == "" and q.dead_letters() == []
    left = set(q.client.keys(f"{q.keys.prefix}*")) - baseline
    streams = {q.keys.stream(p) for p in ("high", "normal", "low")}
    assert left - streams - {q.keys.events, q.keys.idem("once")} == set(), left


def test_every_worker_proves_its_own_loop_alive(rig: Rig) -> None:
    env = {k: v for k, v in rig.env.items() if k != "WORKER_HEARTBEAT_FILE"}
    env["WORKER_HEARTBEAT_DIR"] = str(rig.root)
    from worker.testing import WorkerProc

    a = WorkerProc(rig.root, env, "serve", name="a")
    b = WorkerProc(rig.root, env, "serve", name="b")
    rig.procs += [a, b]
    wait_for(lambda: len(list(rig.root.glob("video-worker-*.heartbeat"))) == 2, "two heartbeats")
    both = worker_cli(rig.root, env, "check")
    assert both.returncode == 0 and len(both.stdout.splitlines()) == 2, both.stderr
    a.signal(signal.SIGKILL)
    a.wait()
    one = worker_cli(rig.root, env, "check")
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 1, one.stderr
    b.signal(signal.SIGTERM)
    assert b.wait(60) == 0
    none = worker_cli(rig.root, env, "check")
    assert none.returncode == 1 and "no worker heartbeat" in none.stderr


def test_metrics_can_listen_on_one_address() -> None:
    from worker.httpd import serve_http

    server = serve_http(0, lambda: b"", lambda: (True, {}), "127.0.0.1")
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.close()


# ------------------------------------------------------------------------- promises kept


@pytest.mark.parametrize("size", [1, 3])
def test_the_model_cache_keeps_exactly_its_size(tmp_path: Path, size: int) -> None:
    from worker.queue.cache import ModelCache

    paths = [make_model(tmp_path / f"m{i}.onnx", classes=3, seed=i) for i in range(4)]
    cache = ModelCache(size, provider="cpu")
    first = [cache.get(p) for p in paths]
    assert cache.loads == 4 and len(cache._models) == size
    # The most recent `size` are served from memory; the ones before were evicted.
    again = [cache.get(p) for p in paths[-size:]]
    assert cache.loads == 4 and all(a is b for a, b in zip(again, first[-size:], strict=True))
    assert cache.get(paths[0]) is not first[0] and cache.loads == 5
    # A model file replaced in place (a new version, same name) is loaded again.
    make_model(paths[0], classes=3, seed=99)
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert cache.get(paths[0]) is not first[0] and cache.loads == 6


def test_the_worker_checks_the_input_again_itself(rig: Rig) -> None:
    # Inside the root at submit; a symlink out of it by the time the worker opens it.
    q = rig.queue()
    (rig.root / "in" / "swapped.mp4").write_bytes(b"")  # there at submit, as a plain file
    spec = q.make_spec(input="swapped.mp4")
    (rig.root / "in" / "swapped.mp4").unlink()
    secret = rig.root / "outside.mp4"
    secret.write_bytes((rig.root / "in" / "a.mp4").read_bytes())
    (rig.root / "in" / "swapped.mp4").symlink_to(secret)
    job_id, _ = q.submit(spec)
    w = rig.worker("--burst")
    assert w.wait(60) == 0, w.text()
    st = q.status(job_id)
    assert st["state"] == "failed" and "outside the input root" in st["error"], st
    assert rig.outputs(job_id) == []


def test_the_last_check_before_renaming_stops_a_job_that_was_taken_over(rig: Rig) -> None:
    # Heartbeats 15 s apart: the job finishes before its worker renews even once, so only the
    # check just before the outputs are renamed into place can find the job gone.
    q = rig.queue()
    job_id, _ = q.submit(q.make_spec(input="long.mp4"))
    a = rig.worker("--burst", name="a", heartbeat_s=15, lease_s=30)
    wait_for(lambda: rig.parts(), "A to be writing")
    thief = Consumer(rig.queue(lease_s=0.001), "thief")
    lease = thief.start(wait_for(thief.take, "the takeover"))
    assert isinstance(lease, Lease)
    wait_for(lambda: "nothing published" in a.text(), "A to find the job gone at the end")
    assert "took it over" not in a.text()  # no heartbeat told it: the last check did
    assert rig.outputs(job_id) == [] and rig.parts() == [], a.text()
    assert lease.finish("done", "{}") == "done"  # the thief still holds the job
    assert a.wait(60) == 0, a.text()
