// Recent events, newest first: snapshot thumbnail, where and what, and a link that plays
// the recording from the event's start (the server answers range requests, so it seeks).
"use strict";
function play(ev) {
  const v = document.getElementById("recording");
  document.getElementById("player").hidden = false;
  document.getElementById("playing").textContent = `${ev.camera} · ${ev.zone || "frame"} · ${ev.label} at ${fmt.time(ev.start)}`;
  v.src = ev.recording_url;
  v.addEventListener("loadedmetadata", () => { v.currentTime = ev.recording_offset_s || 0; v.play(); }, { once: true });
}
async function refresh() {
  try {
    const data = await getJSON("/api/events?limit=100");
    const rows = data.events.filter((e) => e.type === "watch" && e.event === "end").map((ev) => {
      const shot = ev.snapshot_url ? el("img", { class: "thumb", src: ev.snapshot_url, alt: "snapshot" }) : el("span", { class: "muted", text: "–" });
      let link = el("span", { class: "muted", text: "–" });
      if (ev.recording_url && !ev.recording_ready) link = el("span", { class: "muted", text: "recording…" });
      else if (ev.recording_url) {
        link = el("a", { href: "#", "data-recording": ev.recording_url, text: `play from ${fmt.n(ev.recording_offset_s)} s` });
        link.addEventListener("click", (e) => { e.preventDefault(); play(ev); });
      }
      return el("tr", {}, el("td", {}, shot), el("td", { text: ev.camera }), el("td", { text: ev.zone || "frame" }),
        el("td", { text: ev.label }), el("td", { text: fmt.time(ev.start) }), el("td", { text: fmt.time(ev.end) }),
        el("td", { text: fmt.n(ev.peak, 3) }), el("td", {}, link));
    });
    document.getElementById("events").replaceChildren(...rows);
    setStatus(`${rows.length} events · updated ${new Date().toLocaleTimeString()}`);
  } catch (e) { setStatus(`cannot reach the monitor (${e.message})`); }
}
refresh();
setInterval(refresh, 2000);
