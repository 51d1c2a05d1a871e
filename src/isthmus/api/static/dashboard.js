// The isthmus dashboard: plain pages over the HTTP API of the same server.
//
// One script for every page: it reads location.pathname and draws the overview, a job, the
// review queue or the reports. Every value comes from the API as JSON and is put into the
// page as text (textContent, createElement, setAttribute): the data is never parsed as
// markup. Nothing is fetched from anywhere but this server.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "isthmus.apiToken";
  const OVERVIEW_EVERY_MS = 1500;
  const JOB_EVERY_MS = 2000;
  const REVIEW_EVERY_MS = 5000;
  const REPORTS_EVERY_MS = 10000;
  const REQUEST_TIMEOUT_MS = 15000;
  const RUNS_SHOWN = 10;
  const SAMPLES_SHOWN = 50;
  const TYPES = ["completeness_check", "data_integrity", "relationship_integrity", "performance_check"];
  const OPERATIONS = { differential_migration: "migration", sync_operation: "sync", validation: "validation" };
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

  // -- building the page ---------------------------------------------------------------------

  // An element with attributes and children; strings become text nodes, never markup.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name.startsWith("on") && typeof value === "function") {
        node.addEventListener(name.slice(2), value);
      } else node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  // A link to one of the dashboard's pages, or to the API (paths built here, never taken
  // from data: the data only ever fills a path segment, encoded).
  function link(href, ...children) {
    return el("a", { href }, ...children);
  }

  // Replaces node's children (strings as text, nested arrays flattened, null skipped).
  function fill(node, ...children) {
    node.replaceChildren();
    append(node, children);
    return node;
  }

  const seg = (text) => encodeURIComponent(String(text));
  // A job's page: by name, or by ID when the name holds a "/" (the API takes either, but a
  // "/" cannot travel inside one path segment).
  const jobHref = (name, id) => "/jobs/" + seg(String(name).includes("/") && id ? id : name);
  const main = () => document.getElementById("main");

  // Keyed list update: an item whose JSON did not change keeps its node (and with it the
  // focus and the mouse under it); changed items are drawn again, gone ones removed.
  function reconcile(container, items, keyOf, render) {
    const old = new Map();
    for (const child of Array.from(container.children)) {
      if (child.dataset && child.dataset.key !== undefined) old.set(child.dataset.key, child);
    }
    const wanted = [];
    for (const item of items) {
      const key = String(keyOf(item));
      const sig = JSON.stringify(item);
      let node = old.get(key);
      if (!node || node.isthmusSig !== sig) {
        node = render(item);
        node.dataset.key = key;
        node.isthmusSig = sig;
      }
      old.delete(key);
      wanted.push(node);
    }
    for (const gone of old.values()) gone.remove();
    wanted.forEach((node, i) => {
      if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
    });
    while (container.children.length > wanted.length) container.lastElementChild.remove();
  }

  // -- formatting ----------------------------------------------------------------------------

  const numberFormat = new Intl.NumberFormat(undefined);
  const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

  function fmtInt(n) {
    return n === null || n === undefined ? "—" : numberFormat.format(n);
  }

  function fmtRate(r) {
    if (r === null || r === undefined) return "—";
    return (r >= 100 ? numberFormat.format(Math.round(r)) : oneDecimal.format(r)) + " rows/s";
  }

  function fmtPercent(p) {
    return p === null || p === undefined ? "—" : oneDecimal.format(p) + "%";
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return oneDecimal.format(s) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.round(s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function fmtClock(date) {
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  function fmtAbsolute(date) {
    return (
      date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      fmtClock(date)
    );
  }

  function parseTime(iso) {
    if (!iso) return null;
    const date = new Date(iso);
    return isNaN(date.getTime()) ? null : date;
  }

  function relative(date) {
    const s = (date.getTime() - Date.now()) / 1000;
    const a = Math.abs(s);
    let text;
    if (a < 45) text = a < 5 ? "now" : Math.round(a) + " s";
    else if (a < 3600) text = Math.round(a / 60) + " min";
    else if (a < 86400 * 2) text = Math.round(a / 3600) + " h";
    else text = Math.round(a / 86400) + " d";
    if (text === "now") return "just now";
    return s < 0 ? text + " ago" : "in " + text;
  }

  // <time> showing "3 min ago"; the exact time in its title. Kept current by refreshTimes.
  function timeEl(iso, fallback) {
    const date = parseTime(iso);
    if (!date) return el("span", { class: "muted", text: fallback || "—" });
    return el("time", {
      datetime: date.toISOString(),
      title: fmtAbsolute(date),
      "data-relative": "",
      text: relative(date),
    });
  }

  function refreshTimes() {
    for (const t of document.querySelectorAll("time[data-relative]")) {
      const date = parseTime(t.getAttribute("datetime"));
      if (date) t.textContent = relative(date);
    }
  }

  const words = (name) => String(name === null || name === undefined ? "" : name).replace(/_/g, " ");
  const operationName = (op) => OPERATIONS[op] || words(op);

  function badge(status) {
    return el("span", { class: "badge status-" + String(status).replace(/[^a-z_]/g, ""), text: words(status) });
  }

  function passFail(passed) {
    return el("span", { class: "badge " + (passed ? "pass" : "fail"), text: passed ? "pass" : "fail" });
  }

  // A value of a review or report sample, as text: null stands out from the string "null".
  function valueCell(tag, value) {
    if (value === null || value === undefined) return el(tag, { class: "value null", text: "NULL" });
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return el(tag, { class: "value", text });
  }

  // -- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function storedToken() {
    try {
      return localStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function storeToken(token) {
    try {
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      // storage refused (private mode): the field still works for this page
    }
  }

  async function api(path, options) {
    const method = (options && options.method) || "GET";
    const headers = { Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "same-origin" };
    if (method !== "GET") {
      const token = document.getElementById("token").value.trim();
      if (token) headers.Authorization = "Bearer " + token;
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify((options && options.body) || {});
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    init.signal = controller.signal;
    let response;
    let text;
    try {
      response = await fetch(path, init);
      text = await response.text();
    } catch (e) {
      throw new ApiError(0, e && e.name === "AbortError"
        ? "the server did not answer in time"
        : "the server cannot be reached");
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      let message = data && typeof data.error === "string" ? data.error : "HTTP " + response.status;
      if (response.status === 401) message += " (enter the API token at the top of the page)";
      throw new ApiError(response.status, message);
    }
    return data;
  }

  // The footer line: when the page last heard from the server, or why it could not.
  function connected() {
    const conn = document.getElementById("conn");
    conn.className = "ok";
    conn.textContent = "Live: updated " + fmtClock(new Date());
  }

  function disconnected(error) {
    const conn = document.getElementById("conn");
    conn.className = "error";
    conn.textContent = "Not updated: " + (error && error.message ? error.message : String(error));
  }

  // Calls load() now and again every ms after each answer (never two at once); while the
  // tab is hidden it waits, and catches up as soon as the tab shows again.
  function poll(load, ms) {
    let timer = null;
    let busy = false;
    let again = false;
    const tick = async () => {
      clearTimeout(timer);
      if (busy) {
        again = true;
        return;
      }
      if (!document.hidden) {
        busy = true;
        try {
          await load();
          connected();
        } catch (e) {
          disconnected(e);
        } finally {
          busy = false;
        }
        refreshTimes();
      }
      if (again) {
        again = false;
        tick();
        return;
      }
      timer = setTimeout(tick, ms);
    };
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) tick();
    });
    tick();
    return { now: tick };
  }

  // An inline message: errors are alerts (read out at once), the rest polite.
  function message(kind, text) {
    return el("p", { class: "message " + kind, role: kind === "error" ? "alert" : "status", text });
  }

  // -- overview ------------------------------------------------------------------------------

  function progressEl(c, label) {
    const attrs = { "aria-label": label, "data-entity": c.entity_type, max: 100 };
    if (c.records_total) {
      attrs.max = c.records_total;
      attrs.value = Math.min(c.records_processed, c.records_total);
    } else if (c.status === "completed") {
      attrs.value = 100;
    }
    return el("progress", attrs);
  }

  function chunkLabel(c) {
    const chunk = c.metadata && c.metadata.chunk;
    return Array.isArray(chunk) && chunk.length === 2 ? "keys " + fmtInt(chunk[0]) + "–" + fmtInt(chunk[1]) : null;
  }

  function runningCard(c) {
    const remaining = c.records_total && c.rows_per_second
      ? Math.max(0, c.records_total - c.records_processed) / c.rows_per_second
      : null;
    const what = [operationName(c.operation_type)];
    if (c.metadata && c.metadata.phase) what.push(words(c.metadata.phase));
    const chunk = chunkLabel(c);
    if (chunk) what.push(chunk);
    return el(
      "article",
      {
        class: "running",
        "data-entity": c.entity_type,
        "data-operation": c.operation_type,
        "data-processed": c.records_processed,
      },
      el(
        "h3",
        {},
        el("span", { class: "entity", text: c.entity_type }),
        " ",
        el("span", { class: "muted", text: what.join(" · ") }),
        c.job_name ? [" ", link(jobHref(c.job_name, c.job_id), "job " + c.job_name)] : null
      ),
      progressEl(c, c.entity_type + " progress"),
      el(
        "p",
        { class: "figures" },
        el("span", { class: "count", text: fmtInt(c.records_processed) + " of " + fmtInt(c.records_total) + " rows" }),
        el("span", { class: "percent", text: fmtPercent(c.percent) }),
        el("span", { class: "rate", text: fmtRate(c.rows_per_second) }),
        el("span", { text: "running " + fmtSeconds(c.elapsed_seconds) }),
        remaining === null ? null : el("span", { text: "about " + fmtSeconds(remaining) + " left" })
      )
    );
  }

  function jobRow(j) {
    const last = (j.metadata && j.metadata.last_run) || null;
    const run = (j.metadata && j.metadata.run) || null;
    return el(
      "tr",
      { "data-job": j.job_name, "data-status": j.status },
      el("th", { scope: "row" }, link(jobHref(j.job_name, j.id), j.job_name)),
      el("td", { text: words(j.job_type) }),
      el("td", { text: words(j.sync_direction) + " · " + words(j.conflict_resolution) }),
      el("td", {}, badge(j.status), run ? el("span", { class: "muted", text: " since " }) : null,
        run ? timeEl(run.started_at) : null),
      el("td", {}, timeEl(j.last_run_at, "never"), last && last.status ? el("span", { class: "muted", text: " (" + words(last.status) + ")" }) : null),
      el("td", {}, timeEl(j.next_run_at, j.job_type === "scheduled_sync" ? "—" : "on demand")),
      el("td", { class: "num", text: fmtPercent(j.success_rate) }),
      el("td", { class: "num", text: fmtInt(j.total_records_synced) }),
      el("td", { class: "num", text: j.average_duration_ms === null ? "—" : fmtSeconds(j.average_duration_ms / 1000) })
    );
  }

  function entityRow(c) {
    return el(
      "tr",
      { "data-entity": c.entity_type, "data-status": c.status },
      el("th", { scope: "row", text: c.entity_type }),
      el("td", {}, badge(c.status)),
      el("td", {}, progressEl(c, c.entity_type + " migration"), " ", el("span", { class: "muted", text: fmtPercent(c.percent) })),
      el("td", { class: "num", text: fmtInt(c.records_processed) + " / " + fmtInt(c.records_total) }),
      el("td", { class: "num", text: fmtRate(c.rows_per_second) }),
      el("td", {}, timeEl(c.updated_at)),
      el("td", { class: "error-text", text: c.error_message || "" })
    );
  }

  function table(id, caption, headings) {
    const body = el("tbody", {});
    const t = el(
      "table",
      { id },
      caption ? el("caption", { class: "visually-hidden", text: caption }) : null,
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col", text: h })))),
      body
    );
    return { table: t, body };
  }

  function overview() {
    document.title = "Overview · isthmus";
    const running = el("div", { id: "running", class: "cards", "aria-live": "polite", "aria-busy": "false" });
    const runningEmpty = el("p", { class: "muted empty", text: "Nothing is running." });
    const jobs = table("jobs", "Jobs", ["Job", "Type", "Direction · conflicts", "Status", "Last run", "Next run", "Success", "Records synced", "Avg run"]);
    const jobsEmpty = el("p", { class: "muted empty", text: "No jobs yet: isthmus jobs create NAME, or POST /api/jobs." });
    const entities = table("entities", "Migration by entity", ["Entity", "Status", "Progress", "Rows", "Speed", "Updated", "Error"]);
    const entitiesEmpty = el("p", { class: "muted empty", text: "No migration has run yet: isthmus migrate." });
    fill(main(),
      el("h1", { text: "Overview" }),
      el("section", { "aria-labelledby": "running-h" }, el("h2", { id: "running-h", text: "Running now" }), running, runningEmpty),
      el("section", { "aria-labelledby": "jobs-h" }, el("h2", { id: "jobs-h", text: "Jobs" }), jobs.table, jobsEmpty),
      el("section", { "aria-labelledby": "entities-h" }, el("h2", { id: "entities-h", text: "Migration by entity" }), entities.table, entitiesEmpty)
    );
    poll(async () => {
      const [live, jobList, migrations] = await Promise.all([
        api("/api/checkpoints?status=in_progress&limit=100"),
        api("/api/jobs"),
        api("/api/checkpoints?operation=differential_migration&limit=500"),
      ]);
      reconcile(running, live.slice().reverse(), (c) => c.id, runningCard);
      runningEmpty.hidden = live.length > 0;
      reconcile(jobs.body, jobList, (j) => j.id, jobRow);
      jobs.table.hidden = jobList.length === 0;
      jobsEmpty.hidden = jobList.length > 0;
      const newest = new Map();
      for (const c of migrations) {
        if (!newest.has(c.entity_type) && !(c.metadata && c.metadata.chunk)) newest.set(c.entity_type, c);
      }
      for (const c of migrations) if (!newest.has(c.entity_type)) newest.set(c.entity_type, c);
      const rows = Array.from(newest.values()).sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
      reconcile(entities.body, rows, (c) => c.entity_type, entityRow);
      entities.table.hidden = rows.length === 0;
      entitiesEmpty.hidden = rows.length > 0;
    }, OVERVIEW_EVERY_MS);
  }

  // -- a job ---------------------------------------------------------------------------------

  function checkpointTime(c) {
    return parseTime(c.completed_at || c.updated_at || c.started_at || c.created_at);
  }

  // rows/s of each checkpoint over time, one colour per entity; a <title> on each point.
  function throughputChart(checkpoints) {
    const points = checkpoints
      .filter((c) => c.rows_per_second !== null && c.rows_per_second !== undefined && checkpointTime(c))
      .map((c) => ({ c, t: checkpointTime(c).getTime(), r: c.rows_per_second }))
      .sort((a, b) => a.t - b.t);
    if (points.length === 0) return el("p", { class: "muted empty", text: "No throughput measured yet." });
    const W = 760, H = 240, L = 64, R = 16, T = 16, B = 40;
    let t0 = points[0].t, t1 = points[points.length - 1].t;
    if (t1 - t0 < 1000) { t0 -= 500; t1 += 500; }
    const top = niceCeiling(Math.max(...points.map((p) => p.r)));
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (r) => H - B - (r / top) * (H - T - B);
    const entities = Array.from(new Set(points.map((p) => p.c.entity_type)));
    const colour = (e) => PALETTE[entities.indexOf(e) % PALETTE.length];
    const chart = svg("svg", {
      id: "throughput-chart",
      viewBox: "0 0 " + W + " " + H,
      role: "img",
      "aria-label": "Throughput in rows per second of " + points.length + " checkpoints, from " +
        fmtAbsolute(new Date(points[0].t)) + " to " + fmtAbsolute(new Date(points[points.length - 1].t)) +
        "; at most " + fmtRate(Math.max(...points.map((p) => p.r))),
    });
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      chart.append(
        svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
        svg("text", { class: "axis", x: L - 6, y: y(v) + 4, "text-anchor": "end", text: fmtInt(Math.round(v)) })
      );
    }
    chart.append(
      svg("text", { class: "axis", x: L, y: H - 12, "text-anchor": "start", text: fmtAbsolute(new Date(t0)) }),
      svg("text", { class: "axis", x: W - R, y: H - 12, "text-anchor": "end", text: fmtAbsolute(new Date(t1)) }),
      svg("text", { class: "axis", x: 12, y: T + (H - T - B) / 2, transform: "rotate(-90 12 " + (T + (H - T - B) / 2) + ")", "text-anchor": "middle", text: "rows/s" })
    );
    for (const p of points) {
      const title = p.c.entity_type + " · " + operationName(p.c.operation_type) + " · " +
        fmtAbsolute(new Date(p.t)) + " · " + fmtRate(p.r) + " · " + fmtInt(p.c.records_processed) + " rows";
      chart.append(
        svg("g", { class: "point " + p.c.status, "data-entity": p.c.entity_type },
          svg("title", { text: title }),
          svg("line", { x1: x(p.t), x2: x(p.t), y1: y(0), y2: y(p.r), stroke: colour(p.c.entity_type) }),
          svg("circle", { cx: x(p.t), cy: y(p.r), r: 4, fill: colour(p.c.entity_type) }))
      );
    }
    const legend = el("ul", { class: "legend" }, entities.map((e) =>
      el("li", {}, el("span", { class: "swatch", "data-colour": colour(e) }), e)));
    for (const swatch of legend.querySelectorAll(".swatch")) swatch.style.background = swatch.dataset.colour;
    return el("figure", { class: "chart" }, chart, legend);
  }

  function niceCeiling(v) {
    if (!(v > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(v)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= v) return step * power;
    return 10 * power;
  }

  function definitionList(pairs) {
    return el("dl", { class: "facts" }, pairs.filter(Boolean).map(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
  }

  function lastRunSection(last) {
    if (!last) return el("p", { class: "muted empty", text: "It has not run yet." });
    const t = table("last-run", "Last run by entity", ["Entity", "Found", "Written", "Deleted", "For review", "Failed", "Notes"]);
    for (const e of last.entities || []) {
      const found = [];
      for (const [kind, sides] of Object.entries(e.found || {})) {
        for (const [side, n] of Object.entries(sides || {})) found.push(words(kind) + " (" + side + ") " + fmtInt(n));
      }
      t.body.append(el("tr", {},
        el("th", { scope: "row", text: e.entity }),
        el("td", { text: found.join(", ") || "nothing" }),
        el("td", { class: "num", text: fmtInt(e.written) }),
        el("td", { class: "num", text: fmtInt(e.deleted) }),
        el("td", { class: "num", text: fmtInt(e.parked_for_review) }),
        el("td", { class: "num", text: fmtInt(e.failed) }),
        el("td", { text: (e.notes || []).join("; ") })));
    }
    return el("div", {},
      el("p", {}, badge(last.status), " run " + (last.run_id || "") + ": " + fmtInt(last.records_synced) +
        " records synced, " + fmtInt(last.records_failed) + " failed, in " + fmtSeconds(last.seconds)),
      t.table);
  }

  function errorsOf(detail, checkpoints) {
    const out = [];
    const last = detail.job.metadata && detail.job.metadata.last_run;
    if (last && last.error) out.push({ when: detail.job.last_run_at, what: "last run", text: last.error });
    if (detail.task && detail.task.error) out.push({ when: detail.task.finished_at, what: "this server's run", text: detail.task.error });
    for (const c of checkpoints) {
      if (c.status === "failed" || c.error_message) {
        out.push({ when: c.updated_at, what: c.entity_type + " · " + operationName(c.operation_type), text: c.error_message || "failed" });
      }
    }
    return out;
  }

  function jobPage(name) {
    document.title = name + " · isthmus";
    const shownName = el("span", { class: "entity", text: name });
    const heading = el("h1", {}, "Job ", shownName);
    const actionsNote = el("div", { class: "action-result", "aria-live": "polite" });
    const facts = el("div", {});
    const lastRun = el("div", {});
    const errors = el("div", {});
    const chart = el("div", {});
    const checkpoints = table("checkpoints", "Checkpoints", ["Updated", "Entity", "Operation", "Status", "Rows", "Progress", "Speed", "Took", "Error"]);
    const checkpointsEmpty = el("p", { class: "muted empty", text: "No checkpoints yet." });
    let refresh = null;

    const act = (verb, label, done) => el("button", {
      type: "button",
      "data-action": verb,
      text: label,
      onclick: async (event) => {
        if (verb === "cancel" && !window.confirm("Cancel job " + name + " for good? A cancelled job cannot run again.")) return;
        const button = event.currentTarget;
        button.disabled = true;
        fill(actionsNote, message("info", label + "…"));
        try {
          await api("/api/jobs/" + seg(name) + "/" + verb, { method: "POST" });
          fill(actionsNote, message("ok", done));
        } catch (e) {
          fill(actionsNote, message("error", label + " failed: " + e.message));
        } finally {
          button.disabled = false;
          if (refresh) refresh.now();
        }
      },
    });

    fill(main(),
      el("p", { class: "crumbs" }, link("/", "Overview"), " › job"),
      heading,
      el("div", { class: "actions" }, act("run", "Run now", "Run started."),
        act("pause", "Pause", "Paused: the run stops at its next batch."),
        act("resume", "Resume", "Resumed."),
        act("cancel", "Cancel", "Cancelled: the run stops at its next batch, for good.")),
      actionsNote,
      facts,
      el("section", { "aria-labelledby": "lastrun-h" }, el("h2", { id: "lastrun-h", text: "Last run" }), lastRun),
      el("section", { "aria-labelledby": "errors-h" }, el("h2", { id: "errors-h", text: "Errors" }), errors),
      el("section", { "aria-labelledby": "chart-h" }, el("h2", { id: "chart-h", text: "Throughput" }), chart),
      el("section", { "aria-labelledby": "cp-h" }, el("h2", { id: "cp-h", text: "Checkpoints over time" }), checkpoints.table, checkpointsEmpty)
    );

    let chartSig = null;
    refresh = poll(async () => {
      let detail;
      try {
        detail = await api("/api/jobs/" + seg(name));
      } catch (e) {
        if (e.status === 404) {
          fill(facts, message("error", e.message));
          return;
        }
        throw e;
      }
      const j = detail.job;
      if (shownName.textContent !== j.job_name) {
        shownName.textContent = j.job_name;
        document.title = j.job_name + " · isthmus";
      }
      const cps = await api("/api/checkpoints?limit=500&job=" + seg(j.id));
      const run = j.metadata && j.metadata.run;
      const schedule = j.schedule_config && j.schedule_config.cron ? j.schedule_config.cron + " (UTC)" : "on demand";
      fill(facts, definitionList([
        ["Status", [badge(j.status), run ? [" since ", timeEl(run.started_at)] : null]],
        ["Type", words(j.job_type)],
        ["Direction", words(j.sync_direction)],
        ["Conflicts", words(j.conflict_resolution)],
        ["Entities", (j.entities_to_sync || []).join(", ") || "all"],
        ["Schedule", schedule],
        ["Batch size", fmtInt(j.max_records_per_batch)],
        ["Last run", timeEl(j.last_run_at, "never")],
        ["Next run", timeEl(j.next_run_at, "—")],
        ["Success rate", fmtPercent(j.success_rate)],
        ["Records synced", fmtInt(j.total_records_synced)],
        ["Average run", j.average_duration_ms === null ? "—" : fmtSeconds(j.average_duration_ms / 1000)],
        ["Waiting for review", detail.open_review_items
          ? link("/review?job=" + seg(j.job_name), fmtInt(detail.open_review_items) + " records")
          : "none"],
        detail.task ? ["This server's run", [words(detail.task.status), " ", timeEl(detail.task.started_at)]] : null,
      ]));
      const lastSig = JSON.stringify((j.metadata && j.metadata.last_run) || null);
      if (lastRun.isthmusSig !== lastSig) {
        fill(lastRun, lastRunSection(j.metadata && j.metadata.last_run));
        lastRun.isthmusSig = lastSig;
      }
      const found = errorsOf(detail, cps);
      fill(errors, found.length === 0
        ? el("p", { class: "muted empty", text: "No errors." })
        : el("ul", { class: "errors" }, found.map((f) => el("li", {},
          timeEl(f.when), " ", el("strong", { text: f.what }), ": ", el("span", { class: "error-text", text: f.text })))));
      const sig = JSON.stringify(cps.map((c) => [c.id, c.rows_per_second, c.status, c.updated_at]));
      if (sig !== chartSig) {
        fill(chart, throughputChart(cps));
        chartSig = sig;
      }
      reconcile(checkpoints.body, cps, (c) => c.id, (c) => el(
        "tr",
        { class: c.status, "data-entity": c.entity_type },
        el("td", {}, timeEl(c.updated_at)),
        el("th", { scope: "row", text: c.entity_type }),
        el("td", { text: operationName(c.operation_type) + (c.metadata && c.metadata.phase ? " · " + words(c.metadata.phase) : "") }),
        el("td", {}, badge(c.status)),
        el("td", { class: "num", text: fmtInt(c.records_processed) + " / " + fmtInt(c.records_total) }),
        el("td", {}, progressEl(c, c.entity_type + " checkpoint")),
        el("td", { class: "num", text: fmtRate(c.rows_per_second) }),
        el("td", { class: "num", text: fmtSeconds(c.elapsed_seconds) }),
        el("td", { class: "error-text", text: c.error_message || "" })
      ));
      checkpoints.table.hidden = cps.length === 0;
      checkpointsEmpty.hidden = cps.length > 0;
    }, JOB_EVERY_MS);
  }

  // -- the review queue ----------------------------------------------------------------------

  const CHANGE = {
    conflicted_records: "changed on both sides",
    missing_records: "changed in the source, deleted in the target",
    deleted_records: "deleted in the source, changed in the target",
  };

  function versionsTable(item) {
    const src = item.source || null;
    const tgt = item.target || null;
    const columns = [];
    for (const side of [src, tgt]) {
      for (const c of Object.keys(side || {})) if (!columns.includes(c)) columns.push(c);
    }
    const t = el("table", { class: "versions" },
      el("caption", { class: "visually-hidden", text: "Both versions of " + item.entity + " " + item.legacy_id }),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "Column" }),
        el("th", { scope: "col", text: src ? "Source" : "Source (no row)" }),
        el("th", { scope: "col", text: tgt ? "Target" : "Target (no row)" }))));
    const body = el("tbody", {});
    for (const c of columns) {
      const s = src ? src[c] : undefined;
      const g = tgt ? tgt[c] : undefined;
      const differs = !src || !tgt || s !== g;
      const cell = (side, value) => (side ? valueCell("td", value === undefined ? null : value) : el("td", { class: "value absent", text: "—" }));
      body.append(el("tr", { class: differs ? "differs" : null, "data-column": c },
        el("th", { scope: "row" }, c, differs ? el("span", { class: "differs-mark", title: "differs", text: " ≠" }) : null),
        cell(src, s),
        cell(tgt, g)));
    }
    t.append(body);
    return t;
  }

  function reviewPage() {
    document.title = "Review · isthmus";
    const params = new URLSearchParams(location.search);
    const filters = [];
    for (const key of ["job", "entity"]) {
      const v = params.get(key);
      if (v) filters.push([key, v]);
    }
    const query = filters.map(([k, v]) => "&" + k + "=" + seg(v)).join("");
    const count = el("p", { id: "review-count", "aria-live": "polite" });
    const announce = el("div", { id: "review-done", class: "action-result", "aria-live": "polite" });
    const list = el("div", { id: "review-items", class: "review-list" });
    const empty = el("p", { class: "muted empty", text: "Nothing waits for review." });
    const resolved = new Set();
    let shown = 0;
    const setCount = () => {
      shown = list.children.length;
      count.textContent = shown === 1 ? "1 record waits for a decision." : fmtInt(shown) + " records wait for a decision.";
      empty.hidden = shown > 0;
    };

    function itemEl(item) {
      const title = item.entity + " #" + item.legacy_id;
      const headingId = "item-" + item.id;
      const note = el("div", { class: "item-result" });
      const buttons = [];
      const decide = async (winner, done) => {
        for (const b of buttons) b.disabled = true;
        fill(note, message("info", "Resolving…"));
        try {
          await api("/api/review/" + seg(item.id) + "/resolve", { method: "POST", body: { winner } });
          resolved.add(item.id);
          article.remove();
          setCount();
          fill(announce, message("ok", title + ": " + done));
        } catch (e) {
          fill(note, message("error", "Not resolved: " + e.message));
          for (const b of buttons) b.disabled = false;
        }
      };
      const choice = (label, winner, hint, done) => {
        const b = el("button", { type: "button", class: "choice " + winner, "data-winner": winner, title: hint, text: label, onclick: () => decide(winner, done) });
        buttons.push(b);
        return b;
      };
      const article = el("article", {
        class: "review-item",
        "aria-labelledby": headingId,
        "data-id": item.id,
        "data-entity": item.entity,
        "data-legacy-id": item.legacy_id,
      },
      el("h2", { id: headingId, text: title }),
      el("p", { class: "muted" },
        words(item.comparison_type) + ": " + (item.side === "both" ? CHANGE[item.comparison_type] || "changed on both sides" : "changed in the " + item.side),
        item.job ? [" · job ", link(jobHref(item.job, null), item.job)] : null,
        " · waiting since ", timeEl(item.created_at)),
      versionsTable(item),
      el("div", { class: "choices", role: "group", "aria-label": "Keep which version of " + title },
        el("span", { class: "hint", text: "Keep:" }),
        choice("Source", "source", "Keep the source's version: write it to the target", "kept the source's version."),
        choice("Target", "target", "Keep the target's version: write it to the source", "kept the target's version."),
        choice("Skip", "skip", "Close without writing anything (a record still changed on both sides comes back with the next run)", "skipped, nothing written.")),
      note);
      return article;
    }

    fill(main(),
      el("h1", { text: "Review queue" }),
      el("p", { class: "muted" }, "Records a job with the manual rule found changed on both sides. Source writes the source's current version to the target, Target the target's to the source; Skip closes the item without writing."),
      filters.length ? el("p", {}, "Only " + filters.map(([k, v]) => k + " " + v).join(", ") + ". ", link("/review", "Show all")) : null,
      count,
      announce,
      list,
      empty
    );
    poll(async () => {
      const items = await api("/api/review?limit=500" + query);
      const open = items.filter((i) => !resolved.has(i.id));
      // items being resolved keep their node: their JSON is the same
      reconcile(list, open, (i) => i.id, itemEl);
      setCount();
    }, REVIEW_EVERY_MS);
  }

  // -- reports -------------------------------------------------------------------------------

  function groupRuns(reports) {
    const runs = new Map();
    for (const r of reports) {
      const key = r.run_id || r.id;
      if (!runs.has(key)) runs.set(key, { id: key, reports: [], generated: r.generated_at });
      runs.get(key).reports.push(r);
    }
    return Array.from(runs.values());
  }

  function runSection(run) {
    const failed = run.reports.filter((r) => !r.validation_passed);
    const stale = run.reports.some((r) => r.stale);
    const entities = [];
    for (const r of run.reports) if (!entities.includes(r.entity)) entities.push(r.entity);
    entities.reverse(); // the API lists newest first: the run's own order is the reverse
    const types = TYPES.filter((t) => run.reports.some((r) => r.validation_type === t));
    for (const r of run.reports) if (!types.includes(r.validation_type)) types.push(r.validation_type);
    const matrix = el("table", { class: "matrix" },
      el("caption", { class: "visually-hidden", text: "Pass or fail per entity and type" }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Entity" }), types.map((t) => el("th", { scope: "col", text: words(t) })))));
    const body = el("tbody", {});
    for (const e of entities) {
      const row = el("tr", { "data-entity": e }, el("th", { scope: "row", text: e }));
      for (const t of types) {
        const r = run.reports.find((x) => x.entity === e && x.validation_type === t);
        if (!r) { row.append(el("td", { class: "muted", text: "—" })); continue; }
        const label = r.validation_passed ? "pass" : "fail · " + fmtInt(r.discrepancies_found);
        row.append(el("td", { class: r.validation_passed ? "pass" : "fail", "data-type": t },
          r.validation_passed ? label : link("/reports/" + seg(run.id) + "#report-" + seg(r.id), label)));
      }
      body.append(row);
    }
    matrix.append(body);
    const verdict = failed.length === 0;
    return el("section", { class: "run " + (verdict ? "pass" : "fail"), "data-run": run.id },
      el("h2", {}, passFail(verdict), " Run ", el("code", { text: String(run.id).slice(0, 8) }), " ", timeEl(run.generated),
        stale ? el("span", { class: "badge stale", text: "stale" }) : null),
      el("p", {}, fmtInt(run.reports.length) + " reports, " + fmtInt(failed.length) + " failed. ",
        link("/reports/" + seg(run.id), "Discrepancies"), " · ",
        link("/api/reports/" + seg(run.id) + "/html", "Full HTML report")),
      matrix);
  }

  function reportsPage() {
    document.title = "Reports · isthmus";
    const runs = el("div", { id: "runs" });
    const empty = el("p", { class: "muted empty", text: "No validation has run yet." });
    const note = el("div", { class: "action-result", "aria-live": "polite" });
    let refresh = null;
    const validate = el("button", {
      type: "button",
      text: "Validate now",
      onclick: async () => {
        validate.disabled = true;
        fill(note, message("info", "Validating…"));
        try {
          let task = await api("/api/validate", { method: "POST", body: {} });
          while (task.status === "running") {
            await new Promise((done) => setTimeout(done, 1000));
            task = await api("/api/tasks/" + seg(task.id));
          }
          fill(note, task.status === "done"
            ? message("ok", "Validation finished.")
            : message("error", "Validation failed: " + (task.error || "see the server's log")));
        } catch (e) {
          fill(note, message("error", "Validation not started: " + e.message));
        } finally {
          validate.disabled = false;
          if (refresh) refresh.now();
        }
      },
    });
    fill(main(),
      el("h1", { text: "Validation reports" }),
      el("div", { class: "actions" }, validate),
      note,
      runs,
      empty
    );
    refresh = poll(async () => {
      const reports = await api("/api/reports?limit=300");
      const grouped = groupRuns(reports).slice(0, RUNS_SHOWN);
      reconcile(runs, grouped, (r) => r.id, runSection);
      empty.hidden = grouped.length > 0;
    }, REPORTS_EVERY_MS);
  }

  // Samples of one kind of discrepancy: mismatched columns as source/target pairs, rows of
  // keys as a table, plain values as a list.
  function samplesEl(kind, samples, count) {
    const list = Array.isArray(samples) ? samples : [samples];
    const shown = list.slice(0, SAMPLES_SHOWN);
    const head = el("h4", { text: words(kind) + (count !== undefined ? " (" + fmtInt(count) + ")" : "") +
      (list.length > shown.length ? ", first " + shown.length + " shown" : "") });
    if (shown.every((s) => s && typeof s === "object" && !Array.isArray(s) && s.columns && typeof s.columns === "object")) {
      const t = table(null, words(kind), ["Legacy ID", "Column", "Source", "Target", "Changed on"]);
      for (const s of shown) {
        for (const [column, pair] of Object.entries(s.columns)) {
          t.body.append(el("tr", {},
            el("td", { class: "num", text: s.legacy_id === undefined ? "—" : String(s.legacy_id) }),
            el("th", { scope: "row", text: column }),
            valueCell("td", pair && typeof pair === "object" ? pair.source : pair),
            valueCell("td", pair && typeof pair === "object" ? pair.target : null),
            el("td", { text: s.changed_on || "" })));
        }
      }
      return [head, t.table];
    }
    if (shown.every((s) => s && typeof s === "object" && !Array.isArray(s))) {
      const keys = [];
      for (const s of shown) for (const k of Object.keys(s)) if (!keys.includes(k)) keys.push(k);
      const t = table(null, words(kind), keys);
      for (const s of shown) t.body.append(el("tr", {}, keys.map((k) => valueCell("td", s[k]))));
      return [head, t.table];
    }
    return [head, el("p", { class: "value" }, shown.map((s) => (typeof s === "string" ? s : JSON.stringify(s))).join(", "))];
  }

  function detailsEl(details) {
    if (details === null || details === undefined) return null;
    if (Array.isArray(details)) return samplesEl("details", details, details.length);
    if (typeof details !== "object") return el("p", { class: "value", text: String(details) });
    const out = [];
    const counts = details.counts || {};
    const samples = details.samples || {};
    for (const kind of Object.keys(Object.assign({}, counts, samples))) {
      if (samples[kind] !== undefined) out.push(samplesEl(kind, samples[kind], counts[kind]));
      else out.push(el("p", {}, words(kind) + ": " + fmtInt(counts[kind])));
    }
    if (details.truncated) out.push(el("p", { class: "muted", text: "Samples truncated: the counts are complete." }));
    if (details.columns_differing) {
      out.push(el("p", {}, "Columns differing: " + Object.entries(details.columns_differing).map(([c, n]) => c + " " + fmtInt(n)).join(", ")));
    }
    const known = new Set(["counts", "samples", "truncated", "columns_differing", "columns_counted_over"]);
    for (const [k, v] of Object.entries(details)) {
      if (!known.has(k)) out.push(el("p", {}, words(k) + ": ", el("span", { class: "value", text: JSON.stringify(v) })));
    }
    return out;
  }

  function reportDetailPage(id) {
    document.title = "Report " + id + " · isthmus";
    const body = el("div", {});
    const shownId = el("code", { text: id });
    const heading = el("h1", {}, "Validation ", shownId);
    fill(main(),
      el("p", { class: "crumbs" }, link("/reports", "Reports"), " › run"),
      heading,
      el("p", {}, link("/api/reports/" + seg(id) + "/html", "Full HTML report"), " · ", link("/api/reports/" + seg(id), "JSON")),
      body
    );
    const load = async () => {
      let run;
      try {
        run = await api("/api/reports/" + seg(id));
      } catch (e) {
        if (e.status >= 400 && e.status < 500) {
          fill(body, message("error", e.message));
          return;
        }
        throw e;
      }
      if (run.run_id) shownId.textContent = run.run_id;
      else if (run.reports.length === 1) shownId.textContent = run.reports[0].id;
      const reports = run.reports.slice().sort((a, b) => String(a.generated_at).localeCompare(String(b.generated_at)));
      const summary = table("report-table", "Reports", ["Entity", "Type", "Result", "Records", "Discrepancies", "Took", "Generated"]);
      for (const r of reports) {
        summary.body.append(el("tr", { class: (r.validation_passed ? "pass" : "fail") + (r.stale ? " stale" : ""), "data-entity": r.entity, "data-type": r.validation_type },
          el("th", { scope: "row", text: r.entity }),
          el("td", { text: words(r.validation_type) }),
          el("td", {}, passFail(r.validation_passed), r.stale ? el("span", { class: "badge stale", text: "stale" }) : null),
          el("td", { class: "num", text: fmtInt(r.records_validated) }),
          el("td", { class: "num" }, r.discrepancies_found ? link("#report-" + seg(r.id), fmtInt(r.discrepancies_found)) : "0"),
          el("td", { class: "num", text: fmtSeconds(r.execution_time_ms / 1000) }),
          el("td", {}, timeEl(r.generated_at))));
      }
      const drill = reports
        .filter((r) => !r.validation_passed || r.discrepancies_found || (r.metadata && r.metadata.notes))
        .map((r) => el("article", { class: "report " + (r.validation_passed ? "pass" : "fail"), id: "report-" + r.id, "data-entity": r.entity, "data-type": r.validation_type },
          el("h3", {}, passFail(r.validation_passed), " " + r.entity + " · " + words(r.validation_type) + ": " +
            (r.discrepancies_found || !r.validation_passed ? fmtInt(r.discrepancies_found) + " discrepancies" : "passed, with notes")),
          detailsEl(r.discrepancy_details),
          r.metadata && r.metadata.notes ? [el("h4", { text: "Notes (reported, not failing the check)" }), detailsEl(r.metadata.notes)] : null));
      fill(body,
        el("p", { id: "verdict", "data-verdict": run.passed ? "PASS" : "FAIL" }, passFail(run.passed),
          " " + fmtInt(reports.length) + " reports, " + fmtInt(reports.filter((r) => !r.validation_passed).length) + " failed",
          run.stale ? el("span", { class: "badge stale", text: "stale: past its expiry" }) : null),
        summary.table,
        el("h2", { text: "Discrepancies" }),
        drill.length ? drill : el("p", { class: "muted empty", text: "None: every check passed." }));
      if (location.hash) {
        const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
        if (target) target.scrollIntoView();
      }
    };
    const once = async () => {
      try {
        await load();
        connected();
      } catch (e) {
        disconnected(e);
      }
    };
    once();
  }

  // -- start ---------------------------------------------------------------------------------

  function start() {
    const tokenField = document.getElementById("token");
    tokenField.value = storedToken();
    tokenField.addEventListener("input", () => storeToken(tokenField.value.trim()));
    document.getElementById("token-form").addEventListener("submit", (event) => event.preventDefault());

    const path = location.pathname;
    let section = null;
    if (path === "/" || path === "") {
      section = "overview";
      overview();
    } else if (path.startsWith("/jobs/") && path.length > "/jobs/".length) {
      section = "overview";
      jobPage(decodeURIComponent(path.slice("/jobs/".length)));
    } else if (path === "/review") {
      section = "review";
      reviewPage();
    } else if (path === "/reports") {
      section = "reports";
      reportsPage();
    } else if (path.startsWith("/reports/")) {
      section = "reports";
      reportDetailPage(decodeURIComponent(path.slice("/reports/".length)));
    } else {
      fill(main(), message("error", "No such page."), link("/", "Overview"));
    }
    for (const a of document.querySelectorAll("nav a[data-nav]")) {
      if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
