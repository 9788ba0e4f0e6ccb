// Small helpers shared by the pages: fetch JSON, build elements, format numbers.
"use strict";
async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (r.status === 401) {  // the session ended: log in again, then come back here
    location.href = "/login?" + new URLSearchParams({ next: location.pathname + location.search });
    throw new Error("log in first");
  }
  if (!r.ok) {
    let why = `HTTP ${r.status}`;
    try { why = (await r.json()).error || why; } catch (_) { /* not JSON */ }
    throw new Error(why);
  }
  return r.json();
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
const fmt = {
  ms: (v) => (v === undefined || v === null ? "–" : `${Math.round(v)} ms`),
  n: (v, d = 1) => (v === undefined || v === null ? "–" : Number(v).toFixed(d)),
  time: (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–"),
  dur: (s) => {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    s = Math.max(0, Math.round(s));
    const m = Math.floor(s / 60);
    return m ? `${m} min ${s % 60} s` : `${s} s`;
  },
};
function setStatus(text) {
  const s = document.querySelector("header .status");
  if (s) s.textContent = text;
}
// With a login, a way out of it in the header.
getJSON("/api/session").then((s) => {
  const header = document.querySelector("header");
  if (!s.login || !header) return;
  const form = el("form", { method: "post", action: "/logout", class: "logout" },
    el("button", { type: "submit", text: "Log out" }));
  header.append(form);
}).catch(() => {});
