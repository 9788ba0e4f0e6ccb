"""The pages as a person sees them, in a real browser (Chromium, through Selenium): the camera
grid of ``worker monitor`` against real RTSP cameras, its events with snapshots and
recordings, and ``worker dashboard`` over a real Redis with a real ``worker serve``."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser_harness import browser, screenshot
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from factory import make_bright_model
from worker.models import load_model
from worker.testing import (
    Rig,
    RtspServer,
    WorkerProc,
    clean_env,
    free_port,
    make_slow_model,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

SECRET = "hunter2-s3cret"
READ_TIMEOUT_S = 2.0


def env(**settings: str) -> dict[str, str]:
    """A clean environment with ``settings``; the pages on this machine only (no login)."""
    return clean_env(**{"metrics_host": "127.0.0.1", **settings})


def get_json(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return None


def js(b: Any, script: str, *args: Any) -> Any:
    return b.execute_script(script, *args)


# What a person sees of a camera's card: its picture's natural size, a sample of its pixels
# (through a canvas: the picture is an MJPEG stream from our own origin), its state.
_PICTURE = """
const img = document.querySelector(`.card[data-camera="${arguments[0]}"] .view img`);
if (!img || !img.complete || !img.naturalWidth) return null;
const c = document.createElement("canvas");
c.width = 32; c.height = 24;
const g = c.getContext("2d");
g.drawImage(img, 0, 0, 32, 24);
return {w: img.naturalWidth, h: img.naturalHeight,
        pixels: Array.from(g.getImageData(0, 0, 32, 24).data.filter((_, i) => i % 4 === 0))};
"""
_ROWS = """
return [...document.querySelectorAll("#events tr")].map((r) => ({
  kind: r.dataset.event, start: r.dataset.start,
  cells: [...r.querySelectorAll("td")].map((c) => c.textContent),
  downloads: [...r.querySelectorAll("a[data-download]")].map((a) => [a.href, a.download]),
}));
"""
_PLAY = """
const r = document.querySelector(`#events tr[data-start="${arguments[0]}"] a[data-recording]`);
if (r) r.click();
return !!r;
"""
_STATE = """
const s = document.querySelector(`.card[data-camera="${arguments[0]}"] .state`);
return s ? s.textContent : null;
"""


@pytest.mark.long
def test_camera_grid_events_and_recordings_in_a_browser(tmp_path: Path) -> None:
    port = free_port()
    # The test camera's ball spends ~6 s of every ~10 in the left half: events come and go.
    make_bright_model(tmp_path / "bright.onnx")
    with RtspServer(fps=15) as yard, RtspServer(fps=15) as gate:
        assert gate.proc is not None
        cameras = {"yard": yard.url_with("admin", SECRET), "gate": gate.url_with("op", SECRET)}
        w = WorkerProc(
            tmp_path,
            env(cameras=json.dumps(cameras), read_timeout_s=str(READ_TIMEOUT_S)),
            "monitor", "--model", "bright.onnx", "--record", "rec", "--segment-seconds", "2",
            "--zone", "left=0,0 0.5,0 0.5,1 0,1", "--watch", "left:bright>0.01@2 end=0.3s",
            "--metrics-port", str(port),
            name="monitor",
        )  # fmt: skip
        try:
            wait_for(lambda: get_json(port, "/healthz"), "the monitor's pages")
            with browser(tmp_path) as b:
                b.get(f"http://127.0.0.1:{port}/")
                # The live picture: the frame's own size, and it moves.
                first = wait_for(lambda: js(b, _PICTURE, "yard"), "the yard's live picture")
                assert (first["w"], first["h"]) == (320, 240)
                wait_for(
                    lambda: (p := js(b, _PICTURE, "yard")) and p["pixels"] != first["pixels"],
                    "the yard's picture to change",
                )
                wait_for(lambda: js(b, _PICTURE, "gate"), "the gate's live picture")
                wait_for(lambda: js(b, _STATE, "yard") == "live", "the yard's card to say live")
                facts = b.find_element(By.CSS_SELECTOR, '.card[data-camera="yard"] .facts').text
                assert "processed" in facts and "p99" in facts and "dropped" in facts
                # The zone is drawn over the picture, and hovering reads off where the pointer
                # is, in the fractions a zone is written in.
                card = b.find_element(By.CSS_SELECTOR, '.card[data-camera="yard"]')
                assert len(card.find_elements(By.CSS_SELECTOR, "svg polygon")) == 1
                img = card.find_element(By.CSS_SELECTOR, ".view img")
                badge = card.find_element(By.CSS_SELECTOR, ".coords")
                # The badge only while hovering (before: "x -, y -" on every picture).
                ActionChains(b).move_to_element(b.find_element(By.TAG_NAME, "h1")).perform()
                assert not badge.is_displayed()
                ActionChains(b).move_to_element(img).perform()  # its centre
                coords = badge.text
                x, y = (float(v.strip(" xy")) for v in coords.split(","))
                assert abs(x - 0.5) < 0.02 and abs(y - 0.5) < 0.02, coords
                facts = card.find_element(By.CSS_SELECTOR, ".facts").text
                assert "last frame" in facts and "s ago" in facts
                screenshot(b, tmp_path / "monitor.png")
                # A click shows the camera large, another (or Escape) puts it back.
                small = img.size["width"]
                img.click()
                wait_for(lambda: "large" in card.get_attribute("class"), "the yard enlarged")
                assert img.size["width"] > 1.3 * small
                assert img.size["height"] <= js(b, "return window.innerHeight")
                screenshot(b, tmp_path / "monitor-large.png")
                ActionChains(b).send_keys("\ue00c").perform()  # Escape
                wait_for(lambda: "large" not in card.get_attribute("class"), "the grid back")

                # A camera that goes silent says so within its read timeout (+ a refresh).
                os.kill(gate.proc.pid, signal.SIGSTOP)
                silent = time.monotonic()
                try:
                    # Before: "stalled" (and "backoff" when killed) in amber, the last frame
                    # still shown as if live.
                    wait_for(
                        lambda: js(b, _STATE, "gate") == "offline",
                        "the gate's card to say offline",
                        timeout=READ_TIMEOUT_S + 10,
                    )
                    took = time.monotonic() - silent
                    assert took <= READ_TIMEOUT_S + 2.5, f"offline shown after {took:.1f} s"
                    gate_card = b.find_element(By.CSS_SELECTOR, '.card[data-camera="gate"]')
                    why = gate_card.find_element(By.CSS_SELECTOR, ".reason")
                    assert why.is_displayed() and "nothing" in why.text, why.text
                    mark = gate_card.find_element(By.CSS_SELECTOR, ".offline-mark")
                    assert mark.is_displayed() and mark.text.startswith("offline since")
                    assert js(b, _STATE, "yard") == "live"
                    screenshot(b, tmp_path / "monitor-offline.png")
                finally:
                    os.kill(gate.proc.pid, signal.SIGCONT)

                # Events: one in progress is listed as such; then, once ended, its snapshot,
                # date and duration, a download, and its recording plays from the event
                # across the segments it spans (2 s segments; the ball stays ~6 s). (Rows are
                # read and clicked in one script each: the page redraws them every 2 s.)
                b.get(f"http://127.0.0.1:{port}/events")
                going = wait_for(
                    lambda: [r for r in js(b, _ROWS) if r["kind"] == "in-progress"],
                    "an event in progress",
                )[0]
                assert "in progress" in going["cells"][5]
                ended = wait_for(
                    lambda: [
                        r for r in js(b, _ROWS) if r["kind"] == "ended" and len(r["downloads"]) > 1
                    ],
                    "an ended event over several segments",
                )[0]
                cells = ended["cells"]
                assert str(time.gmtime().tm_year) in cells[4]  # the date, not only the time
                assert cells[5].endswith(" s") and "in progress" not in cells[5]
                href, name = ended["downloads"][0]
                assert name.endswith(".mp4")
                with urllib.request.urlopen(href) as r:
                    assert r.status == 200 and r.read(8)[4:8] == b"ftyp"
                # Filters: by camera.
                pick = "document.getElementById('f-camera')"
                assert "yard" in js(b, f"return [...{pick}.options].map(o => o.value)")
                js(b, f"{pick}.value = 'gate'; {pick}.dispatchEvent(new Event('change'))")
                assert {r["cells"][1] for r in js(b, _ROWS)} <= {"gate"}
                js(b, f"{pick}.value = ''; {pick}.dispatchEvent(new Event('change'))")
                assert {r["cells"][1] for r in js(b, _ROWS)} >= {"yard"}
                thumb = wait_for(
                    lambda: js(
                        b,
                        "const i = document.querySelector('img.thumb');"
                        "return i && i.complete && i.naturalWidth ? i.naturalWidth : null;",
                    ),
                    "an event's snapshot",
                )
                assert thumb == 320
                assert js(b, _PLAY, ended["start"])
                started = wait_for(
                    lambda: js(
                        b,
                        "const v = document.getElementById('recording');"
                        "return v.readyState >= 2 && !v.paused ? v.currentTime + 1e-9 : null;",
                    ),
                    "the recording to play",
                )
                wait_for(
                    lambda: (
                        js(b, "return document.getElementById('recording').currentTime") > started
                    ),
                    "the recording's time to advance",
                )
                assert js(b, "return document.getElementById('recording').error") is None
                # No wider than the window (before: a 720p clip overflowed it).
                width = js(b, "return document.getElementById('recording').clientWidth")
                assert width <= js(b, "return window.innerWidth")
                # The next segment follows when the first ends.
                wait_for(
                    lambda: "segment 2 of" in b.find_element(By.ID, "part").text,
                    "the next segment of the event to play",
                )
                screenshot(b, tmp_path / "events.png")

                # No credential anywhere a browser can see.
                seen = [b.page_source]
                b.get(f"http://127.0.0.1:{port}/")
                wait_for(lambda: js(b, _PICTURE, "yard"), "the grid again")
                seen.append(b.page_source)
                for path in ("/api/cameras", "/api/events", "/healthz", "/metrics"):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
                        seen.append(r.read().decode())
                assert not any(SECRET in text or "admin:" in text for text in seen)
            w.signal(signal.SIGTERM)
            assert w.wait() == 0, w.text()
        finally:
            w.close()
    assert SECRET not in w.text()


def test_the_cameras_only_after_a_login(tmp_path: Path) -> None:
    # Before: the camera pages had no login and listened on every interface by default:
    # anyone who could reach the port watched the cameras.
    from worker.web.auth import hash_password

    port = free_port()
    password = "a long enough password"
    with RtspServer(fps=15) as yard:
        w = WorkerProc(
            tmp_path,
            clean_env(cameras=json.dumps({"yard": yard.url}),
                      ui_password_hash=hash_password(password)),  # every interface: a login
            "monitor", "--metrics-port", str(port), name="monitor",
        )  # fmt: skip
        try:
            wait_for(lambda: get_json(port, "/healthz"), "the monitor (its probe needs no login)")
            with browser(tmp_path) as b:
                b.get(f"http://127.0.0.1:{port}/")
                wait_for(lambda: "/login" in b.current_url, "the way to the login")

                def log_in(secret: str) -> None:
                    b.find_element(By.NAME, "user").send_keys("admin")
                    b.find_element(By.NAME, "password").send_keys(secret)
                    b.find_element(By.CSS_SELECTOR, "form button").click()

                log_in("wrong password")
                said = wait_for(
                    lambda: js(b, "const s = document.getElementById('said');"
                                  "return s && !s.hidden ? s.textContent : null;"),
                    "the refusal",
                )  # fmt: skip
                assert "Wrong user or password" in said
                assert not b.find_elements(By.CSS_SELECTOR, ".card[data-camera]")
                screenshot(b, tmp_path / "login.png")
                log_in(password)
                wait_for(lambda: js(b, _PICTURE, "yard"), "the yard's picture, logged in")
                assert b.current_url.rstrip("/") == f"http://127.0.0.1:{port}"
        finally:
            w.signal(signal.SIGTERM)
            w.wait()
            w.close()


@pytest.mark.long
def test_dashboard_shows_a_job_progress_then_done_with_its_chart(rig: Rig) -> None:
    make_slow_model(rig.root / "models" / "slow.onnx")  # ~0.1 s a frame: progress to watch
    q = rig.queue()
    port = free_port()
    dash = WorkerProc(rig.root, rig.env, "dashboard", "--port", str(port), name="dashboard")
    rig.procs.append(dash)
    wait_for(lambda: get_json(port, "/healthz"), "the dashboard to answer")
    rig.worker(name="w1")
    # Long enough to be still under way when the page first shows it: 50 frames were done
    # before the first read on a loaded machine once the worker got faster.
    job_id, _ = q.submit(q.make_spec(input="long.mp4", model="slow.onnx", max_frames=200))
    row = f'tr[data-job="{job_id}"]'

    def done_count() -> int | None:
        text = js(b, f"const p = document.querySelector('{row} [data-progress]');"
                     "return p ? p.textContent : null;")  # fmt: skip
        if not text or "/" not in text:
            return None
        return int(text.split("/")[0])

    with browser(rig.root) as b:
        b.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: b.find_elements(By.CSS_SELECTOR, row), "the job in the list")
        before = wait_for(done_count, "the job's progress")
        wait_for(lambda: (n := done_count()) is not None and n > before, "the progress to move")
        bar = js(b, f"return document.querySelector('{row} .bar > span').style.width")
        assert bar.endswith("%") and 0 < float(bar[:-1]) < 100
        workers = b.find_elements(By.CSS_SELECTOR, "tr[data-worker]")
        assert len(workers) == 1 and "s ago" in workers[0].text
        screenshot(b, rig.root / "dashboard-running.png")
        wait_for(
            lambda: (
                js(b, f"return document.querySelector('{row} [data-state]').textContent") == "done"
            ),
            "the job to show done",
            timeout=120,
        )
        b.find_element(By.CSS_SELECTOR, f'{row} a[data-view="{job_id}"]').click()
        lines = wait_for(lambda: b.find_elements(By.CSS_SELECTOR, "#chart polyline"), "the chart")
        assert len(lines) >= 2  # a line per label
        points = lines[0].get_attribute("points") or ""
        assert len(points.split()) >= 10
        # Issue 19 item 15. Each label in the video's colour, the model card's (before: the
        # chart's own palette: clothes blue in the chart, red in the video) ...
        model = load_model(rig.root / "models" / "slow.onnx", provider="cpu")
        card = {
            label: "#{:02x}{:02x}{:02x}".format(*map(int, model.colors[i]))
            for i, label in enumerate(model.labels)
        }
        strokes = js(b, "return [...document.querySelectorAll('#chart polyline')]"
                        ".map(p => [p.dataset.label, p.getAttribute('stroke')])")  # fmt: skip
        assert strokes and all(card[label] == stroke for label, stroke in strokes), strokes
        # ... and the y axis scaled to the data (before: 0..1, small coverages drew flat).
        series = get_json(port, f"/jobs/{job_id}/series")
        top = max(v for values in series["series"].values() for v in values)
        ticks = js(b, "return [...document.querySelectorAll('#chart text')].map(t => t.textContent)"
                      ".filter(t => !t.endsWith(' s')).map(Number)")  # fmt: skip
        assert top <= max(ticks) <= 2.5 * top, (top, ticks)
        wait_for(
            lambda: js(b, "return document.getElementById('video').readyState >= 1"),
            "the job's video to load",
        )
        assert js(b, "return document.getElementById('video').duration") > 1.5
        counts = b.find_element(By.CSS_SELECTOR, '[data-count="done"] b').text
        assert counts == "1"
        screenshot(b, rig.root / "dashboard.png")
        # A job whose label covers 1-5 % of the frame (cracks in concrete): the axis ends at
        # 0.05, not at 1 where the line would lie flat along the bottom.
        small = rig.out / "small"
        small.mkdir()
        (small / "c.jsonl").write_text("".join(
            json.dumps({"frame": i, "time": i / 25, "coverage": {"crack": 0.01 + i / 1000}}) + "\n"
            for i in range(41)
        ))  # fmt: skip
        result = {"frames": 41, "results": "small/c.jsonl", "colors": {"crack": "#ff0000"}}
        spec = json.dumps({"id": "f" * 32, "input": "c.mp4"})
        fields = {"id": "f" * 32, "state": "done", "spec": spec, "result": json.dumps(result)}
        q.client.hset(q.keys.job("f" * 32), mapping=fields)  # type: ignore[arg-type]
        q.client.zadd(q.keys.state("done"), {"f" * 32: time.time()})
        view = wait_for(
            lambda: b.find_elements(By.CSS_SELECTOR, f'a[data-view="{"f" * 32}"]'), "the job"
        )
        view[0].click()
        wait_for(
            lambda: js(b, "return document.querySelector('#chart polyline[data-label=crack]')"),
            "its chart",
        )
        ticks = js(b, "return [...document.querySelectorAll('#chart text')].map(t => t.textContent)"
                      ".filter(t => !t.endsWith(' s')).map(Number)")  # fmt: skip
        assert max(ticks) == 0.05, ticks
        stroke = js(b, "return document.querySelector('#chart polyline').getAttribute('stroke')")
        assert stroke == "#ff0000"
