"""Where monitor events go: a JSON-lines file, or a Redis stream that survives an outage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from worker.constants import Keys
from worker.errors import OutputError, SettingsError
from worker.sinks import JsonlEvents, RedisEvents, open_events
from worker.testing import RedisServer, wait_for


def test_jsonl_appends_complete_lines_readable_while_open(tmp_path: Path) -> None:
    path = tmp_path / "ev" / "events.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": 1}\n')  # a restarted monitor appends, it does not truncate
    sink = JsonlEvents(path)
    sink.write({"type": "camera", "camera": "a", "state": "live"})
    # Flushed per event: a reader (tail -f, a log shipper) sees it before close.
    assert json.loads(path.read_text().splitlines()[-1])["state"] == "live"
    sink.write({"type": "watch", "event": "start"})
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"earlier": 1},
        {"type": "camera", "camera": "a", "state": "live"},
        {"type": "watch", "event": "start"},
    ]
    assert sink.describe() == {"to": str(path), "written": 2, "lost": 0}


def test_jsonl_path_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"events '.*file/events.jsonl': cannot write"):
        JsonlEvents(tmp_path / "file" / "events.jsonl")


def test_redis_events_wait_out_an_outage_and_arrive_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    key = Keys("cams").monitor_events
    sink = RedisEvents(server.url, "cams")
    try:
        sink.write({"n": 0})
        wait_for(lambda: sink.written == 1, "the first event to be sent")
        server.kill()
        with caplog.at_level(logging.WARNING, logger="worker.event_sinks"):
            for n in range(1, 6):
                sink.write({"n": n})  # never blocks the caller, Redis or not
            wait_for(lambda: "Redis unavailable" in caplog.text, "the outage to be noticed")
            server.start()
            wait_for(lambda: sink.written == 6, "the kept events to be sent", timeout=30)
        assert "Redis is back" in caplog.text
    finally:
        sink.close()
        got = [json.loads(f["event"])["n"] for _id, f in server.client().xrange(key)]  # type: ignore[union-attr,index]
        server.kill()
    assert got == [0, 1, 2, 3, 4, 5]
    assert sink.describe()["lost"] == 0


def test_redis_events_beyond_the_buffer_are_counted_as_lost(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")  # never started: Redis is away throughout
    sink = RedisEvents(server.url, "cams", buffer=3)
    for n in range(5):
        sink.write({"n": n})
    sink.close()
    described = sink.describe()
    assert described.pop("retries") >= 1
    assert described == {
        "to": f"redis stream {Keys('cams').monitor_events}",
        "written": 0,
        "lost": 5,  # 2 pushed out of the buffer, 3 unsent at close
    }


def test_a_bad_redis_url_is_a_settings_error_without_the_password() -> None:
    with pytest.raises(SettingsError, match="WORKER_REDIS_URL") as e:
        open_events("redis", "http://user:s3cret@host:6379/0", "cams")
    assert "s3cret" not in str(e.value)
