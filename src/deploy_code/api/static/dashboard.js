// deploy-code dashboard: polls the API with a bearer token and draws the plots as SVG. No build step.
//
// Token: taken from the URL fragment (#token=..., never sent to a server) or the form, kept in
// sessionStorage (this tab only), sent as `Authorization: Bearer`. The fragment is removed from the
// address bar at once. Data: /v1/status, /v1/health/report and /v1/top every 2 s, /v1/history every
// 5 s (the orchestrator samples its history once a second while someone polls). Server data is only
// ever written with textContent or SVG attributes, never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "deploy-code.dashboard.token";
  const WINDOW_S = 600; // the widest plot: the fine ring buffers' 10 minutes
  const SPANS_S = [60, 120, 300, 600]; // a plot spans the shortest of these that holds its data
  const FAST_MS = 2000;
  const SLOW_MS = 5000;
  const FETCH_TIMEOUT_MS = 10000;
  const MAX_CARDS = 32; // replicas plotted (3 history keys each); the rest are counted in a note
  const KEYS_PER_REQUEST = 64; // the API's bound on keys per /v1/history request
  const LOCAL_POINTS = 400; // restarts seen by /v1/top polls, per replica, when the history has none
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 300;
  const H = 70;
  const PAD_TOP = 5; // the scale's top sits below the frame, zero just above it (a 0 line stays visible)
  const PAD_BOTTOM = 3;
  const yOf = (f) => H - PAD_BOTTOM - f * (H - PAD_TOP - PAD_BOTTOM); // f: 0 (zero) .. 1 (the scale)

  // gap: seconds between two points that break the line (history: 1 s points; restarts may come
  // from the 2 s polls).
  const METRICS = [
    { key: "cpu_percent", label: "CPU", fmt: fmtPercent, floor: 1, step: false, gap: 3 },
    { key: "memory_bytes", label: "Memory", fmt: fmtBytes, floor: 1 << 20, step: false, gap: 3 },
    { key: "restarts", label: "Restarts", fmt: fmtCount, floor: 1, step: true, gap: 10 },
  ];

  const state = {
    token: null,
    authFailed: false,
    now: Date.now() / 1000, // the server's wall clock, from /v1/top
    span: SPANS_S[0], // seconds the plots show, the same for all
    top: null,
    history: {},
    knownKeys: new Set(),
    localRestarts: new Map(), // replica id -> [[t, restarts, restarts], ...]
    errors: new Map(), // poll name -> message
    cards: new Map(), // replica id -> card element
    slowStarted: false,
  };

  const $ = (id) => document.getElementById(id);

  // --- formatting ----------------------------------------------------------------------------------
  function fmtPercent(v) {
    return `${v < 10 ? v.toFixed(1) : Math.round(v)} %`;
  }
  function fmtBytes(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${i === 0 || v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
  }
  function fmtCount(v) {
    return String(Math.round(v));
  }
  function fmtDuration(s) {
    if (s == null) return "–";
    s = Math.floor(s);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }
  function niceCeil(v) {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }
  function badge(node, text, kind) {
    node.textContent = text;
    node.className = `badge ${kind}`;
    node.hidden = false;
  }
  function stateKind(s) {
    if (s === "ready" || s === "running") return "ok";
    if (s === "completed") return "done";
    if (s === "failed") return "bad";
    if (s === "stopped" || s === "stopping" || s === "pending") return "idle";
    return "warn";
  }

  // --- token and fetch -----------------------------------------------------------------------------
  function takeToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      // Out of the address bar and the tab's history: a screenshot or a shared URL must not carry it.
      window.history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    state.token = sessionStorage.getItem(TOKEN_KEY);
    if (!state.token) askToken("");
  }

  function askToken(message) {
    state.authFailed = true;
    $("token-form").hidden = false;
    if (message) $("token-msg").textContent = message;
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    state.token = value;
    state.authFailed = false;
    $("token-form").hidden = true;
  });

  class AuthError extends Error {}

  async function api(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const resp = await fetch(path, {
        headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
        signal: ctl.signal,
        cache: "no-store",
        credentials: "omit",
      });
      if (!resp.ok) {
        const doc = await resp.json().catch(() => ({}));
        const why = doc.detail ? `${doc.code}: ${doc.detail}` : `HTTP ${resp.status} on ${path}`;
        if (resp.status === 401 || resp.status === 403) throw new AuthError(why);
        throw new Error(why);
      }
      return await resp.json();
    } finally {
      clearTimeout(timer);
    }
  }

  function showErrors() {
    const node = $("error");
    const text = [...new Set(state.errors.values())].join(" · ");
    node.textContent = text;
    node.hidden = !text;
  }

  function loop(name, fn, ms) {
    const tick = async () => {
      if (state.token && !state.authFailed) {
        try {
          await fn();
          state.errors.delete(name);
        } catch (err) {
          if (err instanceof AuthError) {
            sessionStorage.removeItem(TOKEN_KEY);
            askToken(`The token was refused (${err.message}). Enter another.`);
          } else {
            const msg = err.name === "AbortError" ? "the API did not answer in time" : err.message;
            state.errors.set(name, `cannot reach the API: ${msg}`);
          }
        }
        showErrors();
      }
      setTimeout(tick, ms);
    };
    tick();
  }

  // --- polls -----------------------------------------------------------------------------------------
  async function pollFast() {
    const [status, report, top] = await Promise.all([
      api("/v1/status"),
      api("/v1/health/report"),
      api("/v1/top"),
    ]);
    state.now = top.at;
    state.top = top;
    noteRestarts(top);
    renderHeader(status, report);
    renderServices(status, report);
    renderReplicas(top);
    renderPlots();
    if (!state.slowStarted) {
      state.slowStarted = true;
      loop("history", pollHistory, SLOW_MS);
    }
  }

  async function pollHistory() {
    const wanted = [];
    for (const r of state.top.replicas.slice(0, MAX_CARDS)) {
      wanted.push(`${r.id}/cpu_percent`, `${r.id}/memory_bytes`);
      if (state.knownKeys.has(`${r.id}/restarts`)) wanted.push(`${r.id}/restarts`);
    }
    const series = {};
    for (let i = 0; i < wanted.length; i += KEYS_PER_REQUEST) {
      const q = new URLSearchParams({ since: String(WINDOW_S), resolution: "1" });
      for (const key of wanted.slice(i, i + KEYS_PER_REQUEST)) q.append("keys", key);
      const doc = await api(`/v1/history?${q}`);
      state.knownKeys = new Set(doc.keys);
      Object.assign(series, doc.series);
    }
    state.history = series;
    renderPlots();
  }

  // Restarts are plotted from the history when it records them, else from what the polls saw.
  function noteRestarts(top) {
    const seen = new Set();
    for (const r of top.replicas) {
      seen.add(r.id);
      let pts = state.localRestarts.get(r.id);
      if (!pts) state.localRestarts.set(r.id, (pts = []));
      pts.push([top.at, r.restarts, r.restarts]);
      while (pts.length > LOCAL_POINTS || (pts.length && pts[0][0] < top.at - WINDOW_S)) pts.shift();
    }
    for (const id of [...state.localRestarts.keys()]) if (!seen.has(id)) state.localRestarts.delete(id);
  }

  // --- rendering -------------------------------------------------------------------------------------
  function renderHeader(status, report) {
    $("project").textContent = status.name || "";
    badge($("phase"), status.phase, stateKind(status.phase));
    badge($("overall"), report.healthy ? "healthy" : "unhealthy", report.healthy ? "ok" : "bad");
    $("updated").textContent = `updated ${new Date(state.now * 1000).toLocaleTimeString()}`;
    document.title = `${status.name || "deploy-code"}: ${report.healthy ? "healthy" : "unhealthy"}`;
  }

  function renderServices(status, report) {
    const body = $("services").tBodies[0];
    const rows = [];
    for (const [name, svc] of Object.entries(status.services)) {
      const health = (report.services || {})[name];
      const tr = el("tr");
      tr.dataset.service = name;
      tr.append(el("td", "name", name));
      const stateCell = el("td", "state");
      const stateBadge = el("span");
      badge(stateBadge, svc.state, stateKind(svc.state));
      stateCell.append(stateBadge);
      tr.append(stateCell);
      tr.append(el("td", "ready num", `${svc.ready}/${svc.desired}`));
      tr.append(el("td", "restarts num", String(svc.restarts)));
      const healthCell = el("td", "health");
      const hb = el("span");
      if (health) {
        badge(hb, health.healthy ? "healthy" : "unhealthy", health.healthy ? "ok" : "bad");
        const why = health.not_ready.map((r) => `${r.id}: ${r.state}${r.reason ? ` (${r.reason})` : ""}`);
        if (why.length) hb.title = why.join("\n");
      } else {
        badge(hb, "unknown", "idle");
      }
      healthCell.append(hb);
      tr.append(healthCell);
      rows.push(tr);
    }
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "muted", "no services");
      td.colSpan = 5;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function newCard(id) {
    const card = el("article", "replica");
    card.dataset.replica = id;
    const head = el("header");
    head.append(el("h3", null, id), el("span", "badge"), el("span", "meta muted"));
    card.append(head);
    const plots = el("div", "plots");
    for (const m of METRICS) {
      const fig = el("figure", "plot");
      fig.dataset.metric = m.key;
      const cap = el("figcaption");
      cap.append(el("span", "label", m.label), el("span", "value", "–"));
      const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
      chart.setAttribute("aria-label", `${m.label} of ${id}`);
      const grid = svg("g", { class: "grid" });
      for (const f of [0, 0.5, 1]) {
        const y = yOf(f).toFixed(1);
        grid.append(svg("line", { x1: 0, x2: W, y1: y, y2: y }));
      }
      chart.append(grid, svg("g", { class: "data" }));
      const axis = el("div", "axis muted");
      axis.append(el("span", "since"), el("span", "scale"), el("span", null, "now"));
      fig.append(cap, chart, axis);
      plots.append(fig);
    }
    card.append(plots);
    return card;
  }

  function renderReplicas(top) {
    const grid = $("replicas");
    const shown = top.replicas.slice(0, MAX_CARDS);
    const ids = new Set(shown.map((r) => r.id));
    for (const [id, card] of state.cards) {
      if (!ids.has(id)) {
        card.remove();
        state.cards.delete(id);
      }
    }
    for (const r of shown) {
      let card = state.cards.get(r.id);
      if (!card) state.cards.set(r.id, (card = newCard(r.id)));
      badge(card.querySelector("header .badge"), r.state, stateKind(r.state));
      const meta = [r.pid ? `pid ${r.pid}` : "no process", `up ${fmtDuration(r.uptime_s)}`];
      if (r.open_files != null) meta.push(`${r.open_files} fds`);
      card.querySelector(".meta").textContent = meta.join(" · ");
      card.dataset.state = r.state;
      grid.append(card); // (re)appended in the API's order
    }
    const note = $("replicas-note");
    const hidden = top.replicas.length - shown.length;
    note.hidden = hidden <= 0;
    note.textContent = hidden > 0 ? `${hidden} more replicas not plotted (first ${MAX_CARDS} shown)` : "";
    if (!top.replicas.length) grid.replaceChildren(el("p", "muted", "no replicas"));
    else grid.querySelector(":scope > p")?.remove();
  }

  function renderPlots() {
    const plots = [];
    let earliest = state.now;
    for (const [id, card] of state.cards) {
      for (const m of METRICS) {
        let points = state.history[`${id}/${m.key}`];
        if (m.key === "restarts" && !(points && points.length)) points = state.localRestarts.get(id);
        points = points || [];
        if (points.length) earliest = Math.min(earliest, points[0][0]);
        plots.push([card.querySelector(`figure[data-metric="${m.key}"]`), points, m]);
      }
    }
    // A young deployment's few seconds of data would be a sliver at the right of 10 minutes.
    state.span = SPANS_S.find((s) => s >= state.now - earliest) || WINDOW_S;
    for (const [fig, points, m] of plots) drawPlot(fig, points, m);
  }

  // Points are [t, mean, max]; a gap longer than m.gap (nobody watched) breaks the line.
  function drawPlot(fig, points, m) {
    const span = state.span;
    const t0 = state.now - span;
    const visible = points.filter((p) => p[0] >= t0 - 1 && p[0] <= state.now + 1);
    let peak = 0;
    for (const p of visible) peak = Math.max(peak, p[2]);
    const scale = niceCeil(Math.max(peak, m.floor));
    const right = W - 3; // "now" a dot's radius inside the frame
    const x = (t) => Math.max(0, Math.min(right, ((t - t0) / span) * right)).toFixed(1);
    const y = (v) => yOf(v / scale).toFixed(1);
    const segments = [];
    let seg = [];
    for (const p of visible) {
      if (seg.length && p[0] - seg[seg.length - 1][0] > m.gap) {
        segments.push(seg);
        seg = [];
      }
      seg.push(p);
    }
    if (seg.length) segments.push(seg);
    const layer = fig.querySelector("g.data");
    const nodes = [];
    for (const s of segments) {
      const xy = [];
      s.forEach((p, i) => {
        if (m.step && i > 0) xy.push(`${x(p[0])},${y(s[i - 1][1])}`);
        xy.push(`${x(p[0])},${y(p[1])}`);
      });
      if (m.step && s === segments[segments.length - 1]) xy.push(`${x(state.now)},${y(s[s.length - 1][1])}`);
      if (xy.length > 1) {
        const first = xy[0].split(",")[0];
        const last = xy[xy.length - 1].split(",")[0];
        const base = yOf(0).toFixed(1);
        nodes.push(svg("polygon", { class: "area", points: `${first},${base} ${xy.join(" ")} ${last},${base}` }));
        nodes.push(svg("polyline", { class: "line", points: xy.join(" ") }));
      }
    }
    if (visible.length) {
      const last = visible[visible.length - 1];
      nodes.push(svg("circle", { class: "dot", cx: x(last[0]), cy: y(last[1]), r: 2 }));
    }
    layer.replaceChildren(...nodes);
    fig.dataset.points = String(visible.length);
    fig.querySelector(".value").textContent = visible.length ? m.fmt(visible[visible.length - 1][1]) : "–";
    fig.querySelector(".since").textContent = `−${span / 60} min`;
    fig.querySelector(".scale").textContent = visible.length ? `scale ${m.fmt(scale)}` : "no data yet";
  }

  takeToken();
  loop("status", pollFast, FAST_MS);
})();
