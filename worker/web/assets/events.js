// Recent events, those still in progress first, then the ended ones newest first: snapshot,
// where and what, the date and how long, and the recording: played from the event's start
// across as many segments as the event lasted (the server answers range requests, so the
// player seeks), or downloaded. Filters by camera, zone and label.
"use strict";
const player = { parts: [], i: 0 };

function zoneOf(ev) { return ev.zone || "frame"; }

function partsOf(ev) {
  // The segments the event spans; older events (or a server without them): the first only.
  if (ev.recording_parts && ev.recording_parts.length) return ev.recording_parts;
  if (!ev.recording_url) return [];
  return [{ url: ev.recording_url, from_s: ev.recording_offset_s || 0, until_s: null, ready: !!ev.recording_ready }];
}

function load(i) {
  const v = document.getElementById("recording"), p = player.parts[i];
  player.i = i;
  document.getElementById("part").textContent = player.parts.length > 1 ? `segment ${i + 1} of ${player.parts.length}` : "";
  v.src = p.url;
  v.addEventListener("loadedmetadata", () => { v.currentTime = p.from_s || 0; v.play(); }, { once: true });
}

function play(ev) {
  player.parts = partsOf(ev).filter((p) => p.ready);
  if (!player.parts.length) return;
  document.getElementById("player").hidden = false;
  document.getElementById("playing").textContent = `${ev.camera} · ${zoneOf(ev)} · ${ev.label} at ${fmt.time(ev.start)}`;
  load(0);
}

const video = document.getElementById("recording");
video.addEventListener("ended", () => { if (player.i + 1 < player.parts.length) load(player.i + 1); });
video.addEventListener("timeupdate", () => {  // a second past the event's end: enough
  const p = player.parts[player.i];
  if (p && p.until_s !== null && p.until_s !== undefined && video.currentTime > p.until_s + 1) video.pause();
});

function when(t) {
  return t ? new Date(t * 1000).toLocaleString() : "–";
}

function recordingCell(ev) {
  const parts = partsOf(ev), ready = parts.filter((p) => p.ready);
  if (!parts.length) return el("td", {}, el("span", { class: "muted", text: "–" }));
  const cell = el("td", {});
  if (!ready.length) { cell.append(el("span", { class: "muted", text: "recording…" })); return cell; }
  const link = el("a", { href: "#", "data-recording": ready[0].url, text: `play from ${fmt.n(ready[0].from_s)} s` });
  link.addEventListener("click", (e) => { e.preventDefault(); play(ev); });
  cell.append(link);
  ready.forEach((p, i) => {
    const name = p.url.split("/").pop();
    cell.append(document.createTextNode(" · "),
      el("a", { href: p.url, download: name, "data-download": "", text: ready.length > 1 ? `download ${i + 1}/${parts.length}` : "download" }));
  });
  return cell;
}

function row(ev, now) {
  const shot = ev.snapshot_url ? el("img", { class: "thumb", src: ev.snapshot_url, alt: "snapshot" }) : el("span", { class: "muted", text: "–" });
  const going = ev.event === "start";
  const duration = going ? `in progress · ${fmt.dur(now - ev.start)}` : fmt.dur(ev.duration_s);
  return el("tr", { "data-event": going ? "in-progress" : "ended", "data-start": `${ev.camera}/${ev.start}` },
    el("td", {}, shot), el("td", { text: ev.camera }), el("td", { text: zoneOf(ev) }),
    el("td", { text: ev.label }), el("td", { text: when(ev.start) }),
    el("td", { class: going ? "going" : "", text: duration }), el("td", { text: fmt.n(ev.peak, 3) }),
    recordingCell(ev));
}

function fillFilter(select, values) {
  const keep = select.value;
  select.replaceChildren(el("option", { value: "", text: "all" }),
    ...[...values].sort().map((v) => el("option", { value: v, text: v })));
  select.value = values.has(keep) ? keep : "";
}

let latest = [];
function show() {
  const now = Date.now() / 1000;
  const want = {};
  for (const s of document.querySelectorAll(".filters select")) want[s.dataset.key] = s.value;
  const keep = (ev) => (!want.camera || ev.camera === want.camera) && (!want.zone || zoneOf(ev) === want.zone)
    && (!want.label || ev.label === want.label);
  const shown = latest.filter(keep);
  document.getElementById("events").replaceChildren(...shown.map((ev) => row(ev, now)));
  const going = shown.filter((ev) => ev.event === "start").length;
  setStatus(`${shown.length} events${going ? `, ${going} in progress` : ""} · updated ${new Date().toLocaleTimeString()}`);
}
for (const s of document.querySelectorAll(".filters select")) s.addEventListener("change", show);

async function refresh() {
  try {
    const data = await getJSON("/api/events?limit=200");
    const watch = data.events.filter((e) => e.type === "watch");
    const key = (e) => [e.camera, e.zone, e.label, e.rule, e.start].join("|");
    const ended = new Set(watch.filter((e) => e.event === "end").map(key));
    // In progress: started, and no end for it yet (newest first, as the server sends them).
    const going = watch.filter((e) => e.event === "start" && !ended.has(key(e)));
    latest = [...going, ...watch.filter((e) => e.event === "end")];
    fillFilter(document.getElementById("f-camera"), new Set(latest.map((e) => e.camera)));
    fillFilter(document.getElementById("f-zone"), new Set(latest.map(zoneOf)));
    fillFilter(document.getElementById("f-label"), new Set(latest.map((e) => e.label)));
    show();
  } catch (e) { setStatus(`cannot reach the monitor (${e.message})`); }
}
refresh();
setInterval(refresh, 2000);
