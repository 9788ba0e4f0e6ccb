"""The queue's rules checked step by step in this process, against a real redis-server.

Rules protected here: a job is schema-checked JSON whose paths stay inside the configured
roots and whose URL scheme is allowlisted; the same idempotency key gives the same job;
higher priorities are taken first; only the current lease holder (its token) may renew or
complete a job; a job whose holders keep vanishing, or that keeps failing, ends in the
dead-letter list; a handed-back job is taken again at once; the password never shows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory import make_model
from worker.errors import JobError, JobNotFoundError, QueueError
from worker.queue.client import Queue
from worker.queue.connection import connect, describe_url, redis_errors
from worker.queue.jobs import parse_spec
from worker.queue.leases import Consumer, Lease
from worker.testing import (
    RedisServer,
    Rig,
    free_port,
    make_video,
    mid_job,
    settings_from,
    state_of,
    wait_for,
    worker_cli,
    worker_env,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path / "redis", appendonly=False)
    r.start()
    yield r
    r.kill()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for d in ("in", "out", "models"):
        (tmp_path / d).mkdir()
    make_video(tmp_path / "in" / "a.mp4", frames=4)
    return tmp_path


def queue(root: Path, server: RedisServer, **settings: object) -> Queue:
    return Queue(settings_from(worker_env(root, server.url, **settings)))


def take_lease(consumer: Consumer) -> Lease:
    d = wait_for(consumer.take, "an entry to take", timeout=10)
    lease = consumer.start(d)
    assert isinstance(lease, Lease), lease
    return lease


# ---------------------------------------------------------------------------- paths, schemes


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input", "../outside.mp4", "outside the input root"),
        ("input", "sub/../../outside.mp4", "outside the input root"),
        ("input", "ABS_OUTSIDE", "outside the input root"),
        ("input", "link.mp4", "outside the input root"),  # a symlink inside, pointing out
        ("input", "missing.mp4", "no such file under the input root"),
        ("output", "../x.mp4", "outside the output root"),
        ("output", "/etc/x.mp4", "outside the output root"),
        ("output", "x.avi", "expected a file name ending in .mp4"),
        ("model", "/etc/passwd", "outside the model root"),
        ("card", "../card.json", "outside the card root"),
    ],
)
def test_paths_outside_the_roots_are_refused_at_submit(
    root: Path, server: RedisServer, field: str, value: str, message: str
) -> None:
    outside = make_video(root / "outside.mp4", frames=2)
    (root / "in" / "link.mp4").symlink_to(outside)
    value = value.replace("ABS_OUTSIDE", str(outside))
    q = queue(root, server)
    fields = {"input": "a.mp4", field: value}
    with pytest.raises(JobError, match=message):
        q.make_spec(**fields)  # type: ignore[arg-type]


def test_refused_submit_is_one_error_line_and_exit_2(root: Path, server: RedisServer) -> None:
    env = worker_env(root, server.url)
    proc = worker_cli(root, "submit", "--input", "../../etc/passwd", env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: input '../../etc/passwd': outside the input root")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert server.client().dbsize() == 0  # nothing was queued


def test_a_job_carries_what_its_flags_and_pipeline_file_say_of_its_video(
    root: Path, server: RedisServer
) -> None:
    # One way for run and submit: the same flags, the pipeline file under them, and what the
    # submitter set of look, encode and analytics travels with the job, checked at submit.
    (root / "job.toml").write_text(
        'input = "a.mp4"\nevery = 2\nalpha = 0.2\n[card]\nthreshold = 0.3\n'
    )
    env = worker_env(root, server.url)
    proc = worker_cli(
        root, "submit", "--pipeline", "job.toml", "--every", "3", "--line-width", "4", env=env
    )
    assert proc.returncode == 0, proc.stderr
    spec = parse_spec(queue(root, server).raw(proc.stdout.strip())["spec"])
    want = {"alpha": 0.2, "every": 3, "line_width": 4, "card": {"threshold": 0.3}}
    assert spec.options == want
    for args, message in (
        (("--masks", "/tmp/elsewhere"), "a job's masks go beside its results"),
        (("--line-width", "-1"), "--line-width: expected a number at least 0"),
    ):
        bad = worker_cli(root, "submit", "--input", "a.mp4", *args, env=env)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert message in bad.stderr, bad.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://127.0.0.1/a.mp4", "URL scheme 'http' is not allowed"),
        ("rtsp://camera/stream", "URL scheme 'rtsp' is not allowed"),
        ("concat:a.mp4|b.mp4", "URL scheme 'concat' is not allowed"),
        ("data:video/mp4;base64,AAAA", "URL scheme 'data' is not allowed"),
        ("file:///etc/passwd", "outside the input root"),
        ("file://otherhost/a.mp4", "not host 'otherhost'"),
    ],
)
def test_url_schemes_outside_the_allowlist_are_refused(
    root: Path, server: RedisServer, value: str, message: str
) -> None:
    with pytest.raises(JobError, match=message):
        queue(root, server).make_spec(input=value)


def test_allowed_urls_are_stored_as_the_worker_will_resolve_them(
    root: Path, server: RedisServer
) -> None:
    q = queue(root, server)
    assert q.make_spec(input=f"file://{root / 'in' / 'a.mp4'}").input == "a.mp4"
    with pytest.raises(JobError, match="scheme 'https' is not allowed"):
        q.make_spec(input="https://example.invalid/a.mp4")
    q = queue(root, server, url_schemes='["file", "https"]')
    assert q.make_spec(input="https://example.invalid/a.mp4").input.startswith("https://")
    with pytest.raises(JobError, match="scheme 'ftp' is not allowed"):
        q.make_spec(input="ftp://example.invalid/a.mp4")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "Invalid JSON"),
        (json.dumps({"id": "0" * 32, "input": "a.mp4", "callable": "os.system"}), "callable"),
        (json.dumps({"id": "../../x", "input": "a.mp4"}), "id"),
        (json.dumps({"id": "0" * 32}), "input"),
        ("\x80\x04\x95pickle", "Invalid JSON"),
    ],
)
def test_payloads_are_checked_by_the_schema(payload: str, message: str) -> None:
    with pytest.raises(JobError, match=message):
        parse_spec(payload)


# ---------------------------------------------------------------------------- submit, take


def test_the_same_idempotency_key_returns_the_same_job(root: Path, server: RedisServer) -> None:
    q = queue(root, server)
    first, created = q.submit(q.make_spec(input="a.mp4", key="batch-7/a"))
    again, created_again = q.submit(q.make_spec(input="a.mp4", key="batch-7/a"))
    other, _ = q.submit(q.make_spec(input="a.mp4", key="batch-7/b"))
    assert (created, created_again) == (True, False)
    assert again == first and other != first
    assert q.depth()["queued"] == 2
    assert sum(q.waiting().values()) == 2


def test_higher_priorities_are_taken_first_in_submit_order(root: Path, server: RedisServer) -> None:
    q = queue(root, server)
    order = ["normal", "low", "normal", "high", "high"]
    ids = [q.submit(q.make_spec(input="a.mp4", priority=p))[0] for p in order]  # type: ignore[arg-type]
    c = Consumer(q, "c1")
    taken = []
    while (d := c.take()) is not None:
        lease = c.start(d)
        assert isinstance(lease, Lease)
        taken.append(lease.job_id)
    assert taken == [ids[3], ids[4], ids[0], ids[2], ids[1]]


def test_cancelling_a_queued_job_removes_it(root: Path, server: RedisServer) -> None:
    q = queue(root, server)
    job_id, _ = q.submit(q.make_spec(input="a.mp4"))
    assert q.cancel(job_id) == "cancelled"
    assert q.cancel(job_id) == "cancelled"  # again: no change, no error
    assert Consumer(q, "c1").take() is None
    assert q.status(job_id)["state"] == "cancelled"
    with pytest.raises(JobNotFoundError, match="not found"):
        q.cancel("f" * 32)


# ---------------------------------------------------------------------------- leases, fencing


def test_a_replaced_lease_holder_can_neither_renew_nor_complete(
    root: Path, server: RedisServer
) -> None:
    q = queue(root, server)
    job_id, _ = q.submit(q.make_spec(input="a.mp4"))
    a = take_lease(Consumer(q, "A"))
    assert a.beat({"done": 1, "total": 4, "fps": 1.0}) == "ok"
    # B's lease is so short that A's entry counts as abandoned at once: B takes it over.
    b = take_lease(Consumer(queue(root, server, lease_s=0.001), "B"))
    assert (a.attempts, b.attempts) == (1, 2)
    assert a.beat() == "lost"
    assert a.finish("done", '{"by": "A"}') == "lost"
    assert a.finish("failed", "A thinks it failed") == "lost"
    st = q.status(job_id)
    assert (st["state"], st["worker"]) == ("running", "B")
    assert b.beat() == "ok"
    assert b.finish("done", '{"by": "B"}') == "done"
    assert q.status(job_id)["result"] == {"by": "B"}
    assert b.finish("done", '{"by": "B again"}') == "lost"  # its token is spent
    assert [e["event"] for e in q.events(job_id)].count("done") == 1
    assert q.client.xlen(q.keys.stream("normal")) == 0  # acknowledged and deleted


def test_a_takeover_loses_to_a_holder_that_renews_before_it_starts(
    root: Path, server: RedisServer
) -> None:
    q = queue(root, server)
    q.submit(q.make_spec(input="a.mp4"))
    a = take_lease(Consumer(q, "A"))
    b = Consumer(queue(root, server, lease_s=0.001), "B")
    claimed = wait_for(b.take, "B to claim A's entry", timeout=10)
    assert claimed.claimed
    assert a.beat() == "ok"  # A renews between B's claim and B's start: the entry is A's again
    assert b.start(claimed) == "lost"
    assert a.finish("done", "{}") == "done"


def test_a_handed_back_job_is_taken_again_at_once(root: Path, server: RedisServer) -> None:
    q = queue(root, server, lease_s=600)
    job_id, _ = q.submit(q.make_spec(input="a.mp4"))
    a = take_lease(Consumer(q, "A"))
    assert a.finish("handback", "shutting down") == "queued"
    b = Consumer(q, "B").take()  # a 600 s lease: only a handback makes it takeable now
    assert b is not None and b.claimed
    lease = Consumer(q, "B").start(b)
    assert isinstance(lease, Lease) and lease.attempts == 2
    assert lease.finish("done", "{}") == "done"
    events = [e["event"] for e in q.events(job_id)]
    assert events == ["submitted", "started", "handed back", "started", "done"]


def test_vanishing_holders_use_up_the_attempts_then_the_job_is_dead_lettered(
    root: Path, server: RedisServer
) -> None:
    q = queue(root, server, max_attempts=2, lease_s=0.001)
    job_id, _ = q.submit(q.make_spec(input="a.mp4"))
    take_lease(Consumer(q, "A"))  # A "dies" holding it
    take_lease(Consumer(q, "B"))  # B takes over (attempt 2) and "dies" too
    c = Consumer(q, "C")
    d = wait_for(c.take, "C to claim the entry", timeout=10)
    assert c.start(d) == "dead"
    st = q.status(job_id)
    assert st["state"] == "dead" and "stopped renewing its lease" in st["error"]
    (letter,) = q.dead_letters()
    assert letter["id"] == job_id and letter["attempts"] == 2


def test_failures_are_retried_with_backoff_then_dead_lettered(
    root: Path, server: RedisServer
) -> None:
    q = queue(root, server, max_attempts=2)
    job_id, _ = q.submit(q.make_spec(input="a.mp4"))
    c = Consumer(q, "A")
    assert take_lease(c).finish("retry", "decoder hiccup", retry_in=0.05) == "retrying"
    assert c.take() is None  # waiting out its backoff, not on the stream
    wait_for(lambda: c.promote_due() == 1, "the retry to come due", timeout=10)
    assert take_lease(c).finish("retry", "decoder hiccup again", retry_in=0.05) == "dead"
    st = q.status(job_id)
    assert (st["state"], st["attempts"], st["error"]) == ("dead", 2, "decoder hiccup again")
    assert q.dead_letters()[0]["error"] == "decoder hiccup again"
    assert q.depth() == {**dict.fromkeys(q.depth(), 0), "dead": 1}


# ---------------------------------------------------------------------------- secrets


def test_the_redis_password_is_never_shown(root: Path, tmp_path: Path) -> None:
    secret = "pw-8c1f0e"
    server = RedisServer(tmp_path / "redis-auth", appendonly=False, password=secret)
    server.start()
    try:
        env = worker_env(root, server.url)
        settings = settings_from(env)
        assert secret not in repr(settings) and secret not in str(settings)
        assert secret not in settings.model_dump_json()
        assert describe_url(server.url) == f"redis://127.0.0.1:{server.port}/0"

        ok = worker_cli(root, "submit", "--input", "a.mp4", env=env)
        assert ok.returncode == 0, ok.stderr

        wrong = {**env, "WORKER_REDIS_URL": server.url.replace(secret, "wrong-" + secret)}
        for args in (["submit", "--input", "a.mp4"], ["jobs"], ["serve", "--burst"]):
            proc = worker_cli(root, *args, env=wrong)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert "refused the user/password" in proc.stderr
            assert secret not in proc.stderr + proc.stdout

        gone = {**env, "WORKER_REDIS_URL": f"redis://user:{secret}@127.0.0.1:{free_port()}/0"}
        proc = worker_cli(root, "status", "0" * 32, env=gone)
        assert proc.returncode == 1 and "unreachable" in proc.stderr
        assert secret not in proc.stderr
        with pytest.raises(QueueError) as e, redis_errors(settings_from(gone)):
            connect(settings_from(gone)).ping()
        assert secret not in str(e.value)
    finally:
        server.kill()


def test_a_non_redis_url_is_a_settings_error(root: Path, server: RedisServer) -> None:
    env = {**worker_env(root, server.url), "WORKER_REDIS_URL": "http://user:pw-77@host/0"}
    proc = worker_cli(root, "jobs", env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: setting WORKER_REDIS_URL: expected redis://")
    assert "pw-77" not in proc.stderr


def test_tls_and_a_password_work_end_to_end(root: Path, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis-tls", appendonly=False, password="pw-tls", tls=True)
    server.start()
    try:
        env = worker_env(root, server.url)
        assert env["WORKER_REDIS_URL"].startswith("rediss://")
        submitted = worker_cli(root, "submit", "--input", "a.mp4", env=env)
        assert submitted.returncode == 0, submitted.stderr
        served = worker_cli(root, "serve", "--burst", env=env)
        assert served.returncode == 0, served.stderr
        status = worker_cli(root, "status", submitted.stdout.strip(), env=env)
        assert json.loads(status.stdout)["state"] == "done"
        assert "pw-tls" not in served.stderr + status.stdout
        # The same server without TLS: refused as unreachable, in one line.
        plain = {**env, "WORKER_REDIS_URL": f"redis://:pw-tls@127.0.0.1:{server.port}/0"}
        proc = worker_cli(root, "jobs", env=plain)
        assert proc.returncode == 1 and proc.stderr.startswith("error: Redis at redis://")
        assert "pw-tls" not in proc.stderr
    finally:
        server.kill()


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


#: What a probe or a script calling the queue's commands every few seconds must not pay for.
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
