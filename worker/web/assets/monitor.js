// The camera grid: one card per camera with its live picture (MJPEG), whether it is live or
// offline (and why, and since when: a dead camera's last frame must not pass for live),
// rates, drops, latency, last event, and its zones drawn over the picture. The facts refresh
// every second with fetch(); the picture streams by itself. Hovering the picture shows the
// fractional position under the pointer, to read zone coordinates off the image; a click
// shows the camera large (again, or Escape: back to the grid).
"use strict";
const cards = new Map();
const rates = new Map();  // camera -> {t, processed}: processed frames per second

function zonesSvg(zones) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 1 1");
  svg.setAttribute("preserveAspectRatio", "none");
  for (const z of zones) {
    const poly = document.createElementNS(svg.namespaceURI, "polygon");
    poly.setAttribute("points", z.points.map((p) => p.join(",")).join(" "));
    poly.setAttribute("fill", "rgba(0,255,255,.08)");
    poly.setAttribute("stroke", "#0ff");
    poly.setAttribute("stroke-width", "0.004");
    poly.setAttribute("vector-effect", "non-scaling-stroke");
    const title = document.createElementNS(svg.namespaceURI, "title");
    title.textContent = z.name;
    poly.append(title);
    svg.append(poly);
  }
  return svg;
}

function card(name, cam) {
  const img = el("img", { alt: `${name} live`, src: `/cameras/${encodeURIComponent(name)}/live.mjpg` });
  const coords = el("span", { class: "coords", text: "x –, y –" });
  const mark = el("div", { class: "offline-mark", hidden: "" });
  const view = el("div", { class: "view", title: "click to enlarge" }, img, zonesSvg(cam.zones || []), coords, mark);
  view.addEventListener("mousemove", (e) => {
    const r = img.getBoundingClientRect();
    const x = (e.clientX - r.left) / r.width, y = (e.clientY - r.top) / r.height;
    coords.textContent = `x ${x.toFixed(3)}, y ${y.toFixed(3)}`;
  });
  const state = el("span", { class: "state" });
  const reason = el("div", { class: "reason", hidden: "" });
  const facts = el("dl", { class: "facts" });
  const c = el("div", { class: "card", "data-camera": name },
    el("h2", {}, el("span", { text: name }), state), reason, view, facts);
  view.addEventListener("click", () => enlarge(c.classList.contains("large") ? null : c));
  return { c, state, reason, facts, img, view, mark };
}

function enlarge(c) {
  for (const k of cards.values()) {
    const large = k.c === c;
    k.c.classList.toggle("large", large);
    // As wide as the page, but no taller than the window: the width its shape allows.
    const w = k.img.naturalWidth, h = k.img.naturalHeight;
    k.view.style.maxWidth = large && w && h ? `calc(85vh * ${w / h})` : "";
  }
  if (c) c.scrollIntoView({ block: "nearest" });
}
document.addEventListener("keydown", (e) => { if (e.key === "Escape") enlarge(null); });

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 60 ? `${seconds.toFixed(1)} s ago` : `${fmt.dur(seconds)} ago`;
}

function when(t) {  // today: the time; before: the date too
  if (!t) return "–";
  const d = new Date(t * 1000);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

function render(cams) {
  const grid = document.getElementById("cameras");
  const now = performance.now() / 1000;
  for (const [name, cam] of Object.entries(cams)) {
    let k = cards.get(name);
    if (!k) { k = card(name, cam); cards.set(name, k); grid.append(k.c); }
    // "offline" in plain words whatever the cause (killed, silent, refused), the cause
    // beneath; and over the picture since when, so its last frame is not taken for live.
    const offline = cam.condition === "offline";
    k.state.textContent = cam.condition;
    k.state.className = `state ${cam.condition}`;
    k.state.title = `${cam.state}${cam.detail ? ": " + cam.detail : ""}`;
    k.reason.hidden = !cam.reason || cam.condition === "live";
    k.reason.textContent = cam.reason || "";
    k.view.classList.toggle("offline", offline);
    k.mark.hidden = !offline;
    k.mark.textContent = offline ? `offline since ${when(cam.offline_since)}` : "";
    const prev = rates.get(name);
    let fps = null;
    if (prev && now > prev.t) fps = (cam.processed - prev.processed) / (now - prev.t);
    rates.set(name, { t: now, processed: cam.processed });
    const drops = Object.entries(cam.dropped_by_reason || {}).map(([r, n]) => `${r} ${n}`).join(", ");
    const ev = cam.last_event;
    const facts = [
      ["processed", `${cam.processed} (${fps === null ? "–" : fps.toFixed(1)} fps)`],
      ["received", `${cam.received}`], ["skipped", `${cam.skipped || 0}`],
      ["dropped", `${cam.dropped}${drops ? ` (${drops})` : ""}`],
      ["latency", `p50 ${fmt.ms(cam.latency_ms.p50)} · p99 ${fmt.ms(cam.latency_ms.p99)}`],
      ["last frame", ago(cam.last_frame_age_s)],
      ...(cam.objects ? [["objects", Object.entries(cam.objects).map(([l, n]) => `${l} ${n}`).join(", ") || "none"]] : []),
      ...Object.entries(cam.lines || {}).map(([line, w]) => [`line ${line}`,
        `in ${Object.values(w.in).reduce((a, b) => a + b, 0)} · out ${Object.values(w.out).reduce((a, b) => a + b, 0)}`]),
      ["detail", `${cam.state}${cam.detail ? ": " + cam.detail : ""}`],
      ["last event", ev ? `${ev.event} ${ev.zone ? ev.zone + ":" : ""}${ev.label || ev.state || ""} ${fmt.time(ev.time)}` : "–"],
    ];
    k.facts.replaceChildren(...facts.flatMap(([a, b]) => [el("dt", { text: a }), el("dd", { "data-fact": a, text: b })]));
  }
}

async function refresh() {
  try {
    const data = await getJSON("/api/cameras");
    render(data.cameras);
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) { setStatus(`cannot reach the monitor (${e.message})`); }
}
refresh();
setInterval(refresh, 1000);
