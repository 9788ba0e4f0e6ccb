// The queue at a glance, refreshed every second: jobs per state, entries waiting per
// priority, the workers and their heartbeats, the newest jobs with progress, ETA and errors.
// A finished job's "view" shows its video and its per-label chart. Read-only: no buttons
// change anything.
"use strict";
let shown = null;  // the job whose outputs are open

function counts(id, obj, title) {
  document.getElementById(id).replaceChildren(
    el("span", { class: "muted", text: title }),
    ...Object.entries(obj).map(([k, n]) => el("div", { class: "n", "data-count": k }, el("b", { text: `${n}` }), el("span", { text: k }))));
}

function progress(job) {
  const p = job.progress;
  if (job.state === "done") return { frac: 1, text: p ? `${p.done} frames` : "done" };
  if (!p) return { frac: 0, text: "–" };
  const frac = p.total ? Math.min(1, p.done / p.total) : 0;
  return { frac, text: p.total ? `${p.done} / ${p.total}` : `${p.done}` };
}

function eta(job) {
  const p = job.progress;
  if (job.state !== "running" || !p || !p.total || !p.fps) return "–";
  return fmt.dur((p.total - p.done) / p.fps);
}

function jobRow(job) {
  const pr = progress(job);
  const bar = el("div", { class: "bar", title: pr.text }, el("span", { style: `width:${(pr.frac * 100).toFixed(1)}%` }));
  let outputs = el("span", { class: "muted", text: "–" });
  if (job.error) outputs = el("span", { class: "err", text: job.error });
  else if (job.video_url || job.series_url) {
    outputs = el("a", { href: "#", "data-view": job.id, text: "view" });
    outputs.addEventListener("click", (e) => { e.preventDefault(); open(job); });
  }
  return el("tr", { "data-job": job.id },
    el("td", { title: job.id, text: job.id.slice(0, 8) }),
    el("td", {}, el("span", { class: `state ${job.state}`, "data-state": job.state, text: job.state })),
    el("td", { text: job.input || "" }),
    el("td", {}, bar, el("span", { class: "muted", "data-progress": "", text: pr.text })),
    el("td", { text: job.progress ? fmt.n(job.progress.fps) : "–" }),
    el("td", { text: eta(job) }), el("td", { text: `${job.attempts}` }),
    el("td", { class: "muted", text: job.worker || "" }), el("td", {}, outputs));
}

async function open(job) {
  shown = job.id;
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = `${job.id.slice(0, 8)} · ${job.input || ""}`;
  const v = document.getElementById("video");
  if (job.video_url) { v.src = job.video_url; v.hidden = false; } else v.hidden = true;
  const chart = document.getElementById("chart"), legend = document.getElementById("legend");
  chart.replaceChildren(); legend.replaceChildren();
  if (!job.series_url) return;
  const s = await getJSON(job.series_url);
  document.getElementById("chart-title").textContent = {
    score: "top labels' scores over time", count: "objects per label over time",
  }[s.kind] || "coverage per label over time";
  // The y axis scaled to the data; each label in the model card's colour, as in the video.
  chart.append(lineChart(s.t, s.series, { colors: s.colors || {} }));
  legend.append(...Object.keys(s.series).map((label, i) =>
    el("span", { "data-label": label }, el("i", { style: `background:${seriesColor(label, i, s.colors)}` }), document.createTextNode(label))));
}

async function refresh() {
  try {
    const [q, j] = await Promise.all([getJSON("/api/queue"), getJSON("/api/jobs?limit=50")]);
    counts("states", q.depth, "jobs");
    counts("waiting", q.waiting, "waiting");
    document.getElementById("workers").replaceChildren(...q.workers.map((w) => el("tr", { "data-worker": w.worker },
      el("td", { text: w.worker }), el("td", { text: w.host || "" }), el("td", { text: w.pid ? `${w.pid}` : "" }),
      el("td", { class: w.gone ? "err" : "", text: w.gone ? `gone (${fmt.dur(w.age_s)} ago)` : `${fmt.n(w.age_s)} s ago` }),
      el("td", { text: w.slots ? `${w.slots}` : "" }), el("td", { text: w.running ? `${Object.keys(w.running).length}` : "" }),
      el("td", { text: w.fps !== undefined ? fmt.n(w.fps) : "" }))));
    document.getElementById("jobs").replaceChildren(...j.jobs.map(jobRow));
    setStatus(`queue '${q.queue}' on ${q.redis} · updated ${new Date().toLocaleTimeString()}`);
  } catch (e) { setStatus(`cannot read the queue (${e.message})`); }
}
refresh();
setInterval(refresh, 1000);
