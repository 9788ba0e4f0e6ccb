// A line chart as inline SVG: one polyline per series over a shared time axis. No library.
"use strict";
function seriesColor(label, i, colors) { return (colors && colors[label]) || PALETTE[i % PALETTE.length]; }
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
// The y axis's top: the data's maximum rounded up to 1, 2, 2.5 or 5 times a power of ten (a
// coverage of 0.00-0.05 fills the chart instead of lying flat along 0..1).
function niceTop(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (max <= m * p * (1 + 1e-9)) return m * p;
  return 10 * p;
}
// Tick labels with as many decimals as the scale needs.
function tick(v, top) {
  const d = Math.max(0, Math.min(6, 1 - Math.floor(Math.log10(top / 2))));
  return v.toFixed(d);
}
// colors: label -> CSS colour (the model card's, as in the video); else the palette.
function lineChart(t, series, { width = 560, height = 240, yMax = null, colors = {} } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const pad = { l: 40, r: 10, t: 10, b: 24 };
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", "100%");
  svg.classList.add("chart");
  const t0 = t.length ? t[0] : 0, t1 = t.length ? t[t.length - 1] : 1;
  const all = Object.values(series).flat();
  const top = yMax ?? niceTop(Math.max(0, ...all));
  const x = (v) => pad.l + ((v - t0) / Math.max(1e-9, t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / top) * (height - pad.t - pad.b);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  for (const f of [0, 0.5, 1]) {
    add("line", { x1: pad.l, x2: width - pad.r, y1: y(top * f), y2: y(top * f), stroke: "#dde1e8" });
    add("text", { x: pad.l - 4, y: y(top * f) + 4, "text-anchor": "end", "font-size": 10, fill: "#6b7385" }, tick(top * f, top));
  }
  add("text", { x: pad.l, y: height - 6, "font-size": 10, fill: "#6b7385" }, `${t0.toFixed(1)} s`);
  add("text", { x: width - pad.r, y: height - 6, "text-anchor": "end", "font-size": 10, fill: "#6b7385" }, `${t1.toFixed(1)} s`);
  Object.entries(series).forEach(([label, values], i) => {
    const pts = values.map((v, j) => `${x(t[j]).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    add("polyline", { points: pts, fill: "none", stroke: seriesColor(label, i, colors), "stroke-width": 1.5, "data-label": label });
  });
  return svg;
}
