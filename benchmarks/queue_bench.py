"""The job queue, measured against a real redis-server and real ``worker serve`` processes.

    python benchmarks/queue_bench.py [--jobs 10000] [--json]

1. takeover: a worker SIGKILLed mid-job; seconds until another worker has started the job
   (lease 2 s, heartbeat 0.2 s, as in the tests);
2. outage: Redis SIGKILLed for twice the lease while a job runs on one of two workers, then
   started again on its AOF: does the job finish on its first attempt, and in how long;
3. throughput: ``--videos`` short videos (12 frames, 160x120) through two burst workers: jobs/s;
4. memory: Redis ``used_memory`` with an empty queue, after ``--jobs`` tiny jobs went through
   the queue's own protocol (submit, take, start, finish: the Redis side of a job, no video),
   and after they expired (``result_ttl_s`` ``--ttl``, 60 s, then one janitor sweep).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from worker.queue import Consumer, Lease, Queue
from worker.queue.janitor import Janitor
from worker.testing import LONG, RedisServer, Rig, make_video, settings_from, wait_for, worker_env

ROOT = Path(__file__).resolve().parents[1]


def _rig(tmp: Path, long_video: Path) -> Rig:
    for d in ("in", "out", "models"):
        (tmp / d).mkdir(parents=True)
    (tmp / "in" / "long.mp4").hardlink_to(long_video)
    make_video(tmp / "in" / "a.mp4", frames=12, width=160, height=120)
    server = RedisServer(tmp / "redis", appendonly=True)
    server.start()
    return Rig(tmp, server, worker_env(tmp, server.url))


def _close(rig: Rig) -> None:
    for p in rig.procs:
        p.close()
    rig.redis.kill()


def _mid_job(q: Queue, job_id: str) -> bool:
    st = q.status(job_id)
    return st["state"] == "running" and bool((st["progress"] or {}).get("done"))


def takeover(tmp: Path, long_video: Path) -> dict[str, Any]:
    rig = _rig(tmp, long_video)
    try:
        q = rig.queue()
        job_id, _ = q.submit(q.make_spec(input="long.mp4"))
        a = rig.worker("--burst", name="a")
        wait_for(lambda: _mid_job(q, job_id), "A mid-job")
        b = rig.worker("--burst", name="b")
        wait_for(lambda: "queue 'video'" in b.text(), "B up")
        a.signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: q.status(job_id)["attempts"] == 2, "the takeover", poll=0.01)
        took = time.monotonic() - killed
        b.wait(120)
        return {"lease_s": 2.0, "takeover_s": round(took, 2), "state": q.status(job_id)["state"]}
    finally:
        _close(rig)


def outage(tmp: Path, long_video: Path) -> dict[str, Any]:
    rig = _rig(tmp, long_video)
    try:
        q = rig.queue()
        job_id, _ = q.submit(q.make_spec(input="long.mp4"))
        a = rig.worker(name="a")
        wait_for(lambda: _mid_job(q, job_id), "A mid-job")
        b = rig.worker(name="b")
        wait_for(lambda: "queue 'video'" in b.text(), "B up")
        rig.redis.kill(signal.SIGKILL)
        down = time.monotonic()
        time.sleep(4.0)  # the outage itself: twice the 2 s lease
        rig.redis.start()
        back = time.monotonic()
        q = rig.queue()
        wait_for(lambda: q.status(job_id)["state"] == "done", "the job", timeout=180)
        st = q.status(job_id)
        for w in (a, b):
            w.signal(signal.SIGTERM)
            w.wait(60)
        return {
            "outage_s": round(back - down, 2),
            "lease_s": 2.0,
            "attempts": st["attempts"],
            "finished_on_first_attempt": st["attempts"] == 1,
            "events": [e["event"] for e in q.events(job_id)],
        }
    finally:
        _close(rig)


def throughput(tmp: Path, long_video: Path, videos: int) -> dict[str, Any]:
    rig = _rig(tmp, long_video)
    try:
        q = rig.queue()
        ids = [q.submit(q.make_spec(input="a.mp4"))[0] for _ in range(videos)]
        start = time.monotonic()
        workers = [rig.worker("--burst", name=f"w{i}") for i in range(2)]
        for w in workers:
            w.wait(600)
        seconds = time.monotonic() - start
        done = sum(q.status(i)["state"] == "done" for i in ids)
        return {
            "jobs": videos,
            "done": done,
            "workers": 2,
            "seconds": round(seconds, 2),
            "jobs_per_s": round(done / seconds, 2),
            "note": "wall time includes both workers' start-up (imports, model load)",
        }
    finally:
        _close(rig)


def memory(tmp: Path, jobs: int, ttl: int) -> dict[str, Any]:
    (tmp / "in").mkdir(parents=True)
    (tmp / "in" / "a.mp4").write_bytes(b"")
    server = RedisServer(tmp / "redis", appendonly=False)
    server.start()
    try:
        env = worker_env(tmp, server.url, result_ttl_s=ttl, dead_ttl_s=ttl)
        q = Queue(settings_from(env))
        q.ensure_groups()

        def used() -> int:
            return int(q.client.info("memory")["used_memory"])

        empty = used()
        consumer = Consumer(q, "bench")
        started = time.monotonic()
        first = ""
        for i in range(jobs):
            job_id, _ = q.submit(q.make_spec(input="a.mp4", key=f"k{i}" if i % 2 else None))
            first = first or job_id
            d = consumer.take()
            assert d is not None
            lease = consumer.start(d)
            assert isinstance(lease, Lease)
            lease.finish("done", json.dumps({"frames": 12, "output": f"{lease.job_id}/a.mp4"}))
        protocol_s = time.monotonic() - started
        full = used()
        keys_full = int(q.client.dbsize())
        first_kept = q.client.exists(q.keys.job(first))
        # Every job's retention time passes (the last one's, counted from now, at most).
        deadline = time.monotonic() + ttl + 30
        last = lease.job_id if isinstance(lease, Lease) else first
        while q.client.exists(q.keys.job(last)) and time.monotonic() < deadline:
            time.sleep(0.5)
        swept = Janitor(q, "bench-janitor", consumer_idle_ms=0).sweep()
        after = used()
        left = {k: q.client.memory_usage(k) for k in q.client.keys("*")}
        return {
            "jobs": jobs,
            "protocol_jobs_per_s": round(jobs / protocol_s, 1),
            "used_memory_empty": empty,
            "used_memory_after_jobs": full,
            "used_memory_after_expiry": after,
            "keys_after_jobs": keys_full,
            "keys_after_expiry": int(q.client.dbsize()),
            "bytes_per_retained_job": round((full - empty) / jobs),
            "all_retained_when_measured": bool(first_kept),
            "result_ttl_s": ttl,
            "janitor": swept,
            "left_after_expiry": left,
            "scripts_and_overhead": {
                k: v
                for k, v in q.client.info("memory").items()
                if k in ("used_memory_scripts", "used_memory_overhead", "used_memory_dataset")
            },
        }
    finally:
        server.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--jobs", type=int, default=10_000, help="tiny jobs for the memory figures")
    ap.add_argument("--videos", type=int, default=40, help="short videos for throughput")
    ap.add_argument("--ttl", type=int, default=60, help="retention of the memory run's jobs (s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp_name:
        tmp = Path(tmp_name)
        long_video = make_video(tmp / "long.mp4", **LONG)  # type: ignore[arg-type]
        result["takeover"] = takeover(tmp / "takeover", long_video)
        result["outage"] = outage(tmp / "outage", long_video)
        result["throughput"] = throughput(tmp / "throughput", long_video, args.videos)
        result["memory"] = memory(tmp / "memory", args.jobs, args.ttl)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    t, o, th, m = result["takeover"], result["outage"], result["throughput"], result["memory"]
    print(f"takeover: {t['takeover_s']} s after SIGKILL (lease {t['lease_s']} s), {t['state']}")
    print(
        f"outage: Redis down {o['outage_s']} s (lease {o['lease_s']} s): job finished on "
        f"attempt {o['attempts']} ({' -> '.join(o['events'])})"
    )
    print(
        f"throughput: {th['done']}/{th['jobs']} short jobs in {th['seconds']} s on 2 workers "
        f"= {th['jobs_per_s']} jobs/s ({th['note']})"
    )
    mib = 1 << 20
    print(
        f"memory: used_memory empty {m['used_memory_empty'] / mib:.2f} MiB; after "
        f"{m['jobs']} jobs {m['used_memory_after_jobs'] / mib:.2f} MiB "
        f"({m['bytes_per_retained_job']} bytes per retained job, {m['keys_after_jobs']} keys); "
        f"after expiry {m['used_memory_after_expiry'] / mib:.2f} MiB "
        f"({m['keys_after_expiry']} keys)"
    )
    print(f"  protocol alone: {m['protocol_jobs_per_s']} jobs/s; janitor: {m['janitor']}")
    print(f"  left after expiry: {m['left_after_expiry']}; {m['scripts_and_overhead']}")
    if not m["all_retained_when_measured"]:
        print("  (the run took longer than --ttl: some jobs had expired when measured)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
