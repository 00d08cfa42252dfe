/* Mensa dashboard: polls the master's /state every 2 s and renders it. Plain JavaScript, no
 * build step, nothing fetched from elsewhere.
 *
 * Safety: every value from the cluster (task names, labels, hostnames, ...) reaches the DOM as
 * text (textContent, text nodes, attribute values), never as HTML; links are built only from
 * http(s) URLs. Scale: tables show one page of rows (25 by default), filtered and sorted in
 * memory, and a section's DOM is rebuilt only when what it shows changed.
 */
"use strict";

(() => {
  const POLL_MS = 2000;
  const HIDDEN_POLL_MS = 10000;
  const LOG_POLL_MS = 2000;
  const LOG_TAIL_BYTES = 256 * 1024;
  const LOG_CHUNK_BYTES = 256 * 1024;
  const LOG_MAX_CHARS = 1024 * 1024;
  const RESOURCES = ["cpus", "mem", "disk"];
  const TERMINAL = new Set(["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNREACHABLE", "TASK_UNKNOWN"]);
  const TASK_STATES = ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED",
    "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_UNREACHABLE",
    "TASK_GONE", "TASK_UNKNOWN"];

  // -- Performance figures, read by tests and curious operators (window.mensaDashboard.perf).
  const perf = { polls: 0, failures: 0, lastFetchMs: 0, lastRenderMs: 0, maxRenderMs: 0,
    longTasks: 0, longestTaskMs: 0 };
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        perf.longTasks += 1;
        perf.longestTaskMs = Math.max(perf.longestTaskMs, entry.duration);
      }
    }).observe({ type: "longtask", buffered: true });
  } catch (e) { /* longtask entries are not supported by every browser */ }

  // -- Small helpers -----------------------------------------------------------------------

  /** Returns a new element; children are Nodes or values shown as text (null is skipped). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** Returns a link element for an http(s) URL, or a text node when the URL is anything else. */
  function link(url, label) {
    try {
      const parsed = new URL(url, location.href);
      if (parsed.protocol === "http:" || parsed.protocol === "https:") {
        return h("a", { href: parsed.href, rel: "noopener noreferrer" }, label);
      }
    } catch (e) { /* not a URL */ }
    return document.createTextNode(String(label));
  }

  const num = (v) => (Number.isFinite(Number(v)) ? Number(v) : 0);

  function fmtNumber(v, digits) {
    const n = num(v);
    return Number.isInteger(n) ? String(n) : n.toFixed(digits).replace(/\.?0+$/, "");
  }

  /** Formats a resource quantity: memory and disk are in MB, as Mesos counts them. */
  function fmtRes(name, v) {
    const n = num(v);
    if (name === "mem" || name === "disk") {
      if (n >= 1024 * 1024) return `${fmtNumber(n / (1024 * 1024), 1)} TiB`;
      if (n >= 1024) return `${fmtNumber(n / 1024, 1)} GiB`;
      return `${fmtNumber(n, 1)} MiB`;
    }
    return fmtNumber(n, 2);
  }

  function fmtResources(res) {
    if (!res) return "";
    const parts = [];
    for (const name of RESOURCES) if (num(res[name]) > 0) parts.push(`${name} ${fmtRes(name, res[name])}`);
    for (const [name, value] of Object.entries(res)) {
      if (RESOURCES.includes(name) || (typeof value === "number" && value === 0)) continue;
      parts.push(`${name} ${typeof value === "number" ? fmtNumber(value, 2) : value}`);
    }
    return parts.join(", ");
  }

  const pad = (n) => String(n).padStart(2, "0");

  /** Formats epoch seconds as local "YYYY-MM-DD HH:MM:SS". */
  function fmtTime(seconds) {
    if (!seconds) return "";
    const d = new Date(num(seconds) * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtAgo(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  const pct = (part, whole) => (num(whole) > 0 ? Math.min(100, (100 * num(part)) / num(whole)) : 0);
  const fmtPct = (share) => `${(100 * num(share)).toFixed(1)}%`;

  /** A usage bar: used (and optionally offered) out of total. */
  function bar(used, total, offered) {
    const el = h("div", { class: "bar", role: "img",
      "aria-label": `${fmtPct(num(used) / (num(total) || 1))} used` });
    const usedEl = h("div", { class: "used" });
    usedEl.style.width = `${pct(used, total)}%`;
    el.append(usedEl);
    if (offered !== undefined) {
      const offeredEl = h("div", { class: "offered" });
      offeredEl.style.width = `${Math.min(pct(offered, total), 100 - pct(used, total))}%`;
      el.append(offeredEl);
    }
    return el;
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** GETs JSON from this master; throws HttpError with the server's reason for non-2xx. */
  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const reason = body && (body.error || body.message) ? body.error || body.message : response.statusText;
      throw new HttpError(response.status, `${response.status} ${reason}`);
    }
    return { body, response };
  }

  // -- Paged, filtered, sorted tables ----------------------------------------------------------

  /**
   * A table showing one page of its rows. Columns: {title, text(row) -> string (shown, searched
   * and compared), cell(row) -> Node (optional, richer rendering), sort(row) -> key (optional),
   * cls}. Only the visible page is in the DOM; it is rebuilt only when its text changed.
   */
  class Table {
    constructor(section, options) {
      this.section = section;
      this.columns = options.columns;
      this.key = options.key;
      this.emptyText = options.emptyText || "nothing to show";
      this.matcher = options.matcher || null; // () -> (row -> bool) | null, an extra filter
      this.pageSize = options.pageSize || 25;
      this.page = 0;
      this.sortColumn = options.sortColumn || 0;
      this.sortDirection = 1;
      this.rows = [];
      this.view = [];
      this.query = "";
      this.signature = null;
      this.tbody = section.querySelector("tbody");
      this.count = section.querySelector(".count");
      this.buildHead(section.querySelector("thead"));
      this.buildPager(section.querySelector(".pager"));
      const filter = section.querySelector(".filter");
      if (filter) {
        filter.addEventListener("input", () => {
          this.query = filter.value.trim().toLowerCase();
          this.page = 0;
          this.refresh();
        });
      }
    }

    buildHead(thead) {
      this.headCells = this.columns.map((column, i) => h("th", { scope: "col", class: column.cls },
        column.sortable === false ? column.title : h("button", { type: "button", onclick: () => {
          this.sortDirection = this.sortColumn === i ? -this.sortDirection : 1;
          this.sortColumn = i;
          this.refresh();
        } }, column.title)));
      thead.replaceChildren(h("tr", null, this.headCells));
    }

    buildPager(pager) {
      this.prev = h("button", { type: "button", class: "prev", onclick: () => this.go(this.page - 1) }, "◀ previous");
      this.next = h("button", { type: "button", class: "next", onclick: () => this.go(this.page + 1) }, "next ▶");
      this.info = h("span", { class: "info" });
      const size = h("select", { class: "page-size", "aria-label": "Rows per page", onchange: () => {
        this.pageSize = Number(size.value);
        this.page = 0;
        this.refresh();
      } }, [10, 25, 50, 100].map((n) => h("option", { value: n, selected: n === this.pageSize }, `${n} rows`)));
      pager.replaceChildren(this.info, size, this.prev, this.next);
    }

    go(page) {
      this.page = page;
      this.refresh();
    }

    /** Replaces the rows (each may carry a precomputed lower-case `_search` string). */
    setRows(rows) {
      this.rows = rows;
      this.refresh();
    }

    /** Filters, sorts and shows the current page; returns whether the DOM changed. */
    refresh(force) {
      const query = this.query;
      let view = this.rows;
      if (query) view = view.filter((row) => this.searchText(row).includes(query));
      const predicate = this.matcher ? this.matcher() : null;
      if (predicate) view = view.filter(predicate);
      const column = this.columns[this.sortColumn];
      const keyOf = column.sort || column.text;
      const keyed = view.map((row) => [keyOf(row), row]);
      const dir = this.sortDirection;
      keyed.sort((a, b) => (a[0] < b[0] ? -dir : a[0] > b[0] ? dir : 0));
      this.view = keyed.map((pair) => pair[1]);
      const pages = Math.max(1, Math.ceil(this.view.length / this.pageSize));
      this.page = Math.min(Math.max(0, this.page), pages - 1);
      return this.render(force, pages);
    }

    searchText(row) {
      if (row._search === undefined) {
        row._search = this.columns.map((c) => c.text(row)).join(" ").toLowerCase();
      }
      return row._search;
    }

    render(force, pages) {
      const start = this.page * this.pageSize;
      const slice = this.view.slice(start, start + this.pageSize);
      const texts = slice.map((row) => this.columns.map((c) => c.text(row)));
      const signature = JSON.stringify([start, this.view.length, this.rows.length, this.sortColumn,
        this.sortDirection, texts]);
      if (!force && signature === this.signature) return false;
      this.signature = signature;
      this.headCells.forEach((th, i) => {
        th.classList.toggle("sorted-asc", i === this.sortColumn && this.sortDirection > 0);
        th.classList.toggle("sorted-desc", i === this.sortColumn && this.sortDirection < 0);
      });
      const trs = slice.map((row, r) => h("tr", { "data-key": this.key(row) },
        this.columns.map((column, c) => h("td", { class: column.cls },
          column.cell ? column.cell(row) : texts[r][c]))));
      if (!trs.length) {
        trs.push(h("tr", null, h("td", { class: "empty", colspan: this.columns.length },
          this.rows.length ? "no row matches the filter" : this.emptyText)));
      }
      this.tbody.replaceChildren(...trs);
      if (this.count) {
        this.count.textContent = this.view.length === this.rows.length ? `(${this.rows.length})`
          : `(${this.view.length} of ${this.rows.length})`;
      }
      this.info.textContent = this.view.length
        ? `rows ${start + 1}–${start + slice.length} of ${this.view.length} · page ${this.page + 1} of ${pages}`
        : "no rows";
      this.prev.disabled = this.page === 0;
      this.next.disabled = this.page >= pages - 1;
      return true;
    }
  }

  // -- The model: what the sections show, derived from one /state document ----------------------

  /** Returns {agents, frameworks, roles, tasks, totals, ...} from /state (and /roles). */
  function model(state, rolesDoc) {
    const agents = state.agents || state.slaves || [];
    const agentById = new Map(agents.map((a) => [a.id, a]));
    const roleList = state.roles || (rolesDoc && rolesDoc.roles) || [];
    const roles = new Map(roleList.map((r) => [r.name, r]));
    const frameworks = [];
    const tasks = [];
    const addFramework = (fw, completed) => {
      frameworks.push({ fw, completed });
      const name = fw.name || fw.id;
      for (const list of [fw.tasks || [], fw.completed_tasks || []]) {
        for (const task of list) {
          const agentId = task.agent_id || task.slave_id || "";
          const agent = agentById.get(agentId);
          tasks.push({ task, frameworkName: name, frameworkId: fw.id, agentId,
            agentHost: agent ? agent.hostname : "" });
        }
      }
    };
    for (const fw of state.frameworks || []) addFramework(fw, false);
    for (const fw of state.completed_frameworks || []) addFramework(fw, true);
    const totals = {};
    for (const name of RESOURCES) totals[name] = { total: 0, used: 0, offered: 0 };
    for (const agent of agents) {
      for (const name of RESOURCES) {
        totals[name].total += num((agent.resources || {})[name]);
        totals[name].used += num((agent.used_resources || {})[name]);
        totals[name].offered += num((agent.offered_resources || {})[name]);
      }
    }
    const byState = {};
    for (const { task } of tasks) byState[task.state] = (byState[task.state] || 0) + 1;
    return { state, rolesDoc, agents, agentById, frameworks, roles, roleList, tasks, totals, byState };
  }

  // -- Sections ---------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  let current = null; // the latest model

  function resourceColumn(name) {
    return {
      title: name, cls: "res-col",
      text: (a) => `${fmtRes(name, (a.used_resources || {})[name])} / ${fmtRes(name, (a.resources || {})[name])}`,
      sort: (a) => pct((a.used_resources || {})[name], (a.resources || {})[name]),
      cell: (a) => h("div", { class: "res" },
        `${fmtRes(name, (a.used_resources || {})[name])} / ${fmtRes(name, (a.resources || {})[name])}`,
        bar((a.used_resources || {})[name], (a.resources || {})[name], (a.offered_resources || {})[name])),
    };
  }

  const attributesText = (a) => Object.entries(a.attributes || {}).map(([k, v]) => `${k}:${v}`).join("; ");

  function agentSeen(agent) {
    if (agent.last_seen) return fmtTime(agent.last_seen);
    return agent.active === false ? "inactive" : "active";
  }

  const agentsTable = () => new Table($("agents"), {
    key: (a) => a.id,
    emptyText: "no agent is registered",
    columns: [
      { title: "hostname", text: (a) => a.hostname || "" },
      { title: "id", cls: "mono", text: (a) => a.id || "" },
      resourceColumn("cpus"),
      resourceColumn("mem"),
      resourceColumn("disk"),
      { title: "attributes", text: attributesText },
      { title: "tasks", text: (a) => String(num(a.tasks)), sort: (a) => num(a.tasks) },
      { title: "registered", text: (a) => fmtTime(a.registered_time) +
          (a.reregistered_time ? ` (re-registered ${fmtTime(a.reregistered_time)})` : ""),
        sort: (a) => num(a.registered_time) },
      { title: "last seen", text: agentSeen },
    ],
  });

  function frameworkStatus(fw, completed) {
    if (completed) return "completed";
    if (fw.recovered) return "recovered (not re-subscribed)";
    if (fw.active) return "active";
    return fw.connected ? "connected, inactive" : "disconnected";
  }

  const fwRoles = (fw) => (fw.roles && fw.roles.length ? fw.roles : [fw.role || "*"]);

  function dominantShare(fw) {
    const shares = (fw.allocation || {}).dominant_shares || {};
    const entries = Object.entries(shares);
    if (!entries.length) return { max: 0, text: "" };
    const max = Math.max(...entries.map(([, s]) => num(s)));
    return { max, text: entries.map(([role, s]) => `${role}: ${fmtPct(s)}`).join(", ") };
  }

  function allocationText(fw) {
    const allocated = (fw.allocation || {}).allocated;
    if (allocated) {
      return Object.entries(allocated).map(([role, res]) => `${role}: ${fmtResources(res) || "nothing"}`).join("; ");
    }
    return fmtResources(fw.used_resources);
  }

  function quotaText(quota) {
    if (!quota) return "";
    const guarantee = fmtResources(quota.guarantee);
    const limit = quota.limit ? fmtResources(quota.limit) || "none" : "";
    return [guarantee ? `guarantee ${guarantee}` : "", limit ? `limit ${limit}` : ""].filter(Boolean).join(", ");
  }

  function frameworkQuota(fw) {
    if (!current) return "";
    return fwRoles(fw).map((role) => [role, current.roles.get(role)])
      .filter(([, r]) => r && r.quota).map(([role, r]) => `${role}: ${quotaText(r.quota)}`).join("; ");
  }

  const frameworksTable = () => new Table($("frameworks"), {
    key: (r) => r.fw.id,
    emptyText: "no framework is subscribed",
    columns: [
      { title: "name", text: (r) => r.fw.name || "",
        cell: (r) => (r.fw.webui_url ? link(r.fw.webui_url, r.fw.name || r.fw.id) : r.fw.name || "") },
      { title: "id", cls: "mono", text: (r) => r.fw.id || "" },
      { title: "roles", text: (r) => fwRoles(r.fw).join(", ") },
      { title: "status", text: (r) => frameworkStatus(r.fw, r.completed) },
      { title: "tasks", text: (r) => String((r.fw.tasks || []).length), sort: (r) => (r.fw.tasks || []).length },
      { title: "dominant share", text: (r) => dominantShare(r.fw).text, sort: (r) => dominantShare(r.fw).max },
      { title: "allocation", text: (r) => allocationText(r.fw) },
      { title: "quota", text: (r) => frameworkQuota(r.fw) },
      { title: "why no offers", text: (r) => ((r.fw.allocation || {}).why_no_offers || []).join("; ") },
    ],
  });

  const rolesTable = () => new Table($("roles"), {
    key: (r) => r.name,
    emptyText: "no role has frameworks, weights, quota or allocations",
    columns: [
      { title: "role", text: (r) => r.name },
      { title: "weight", text: (r) => fmtNumber(r.weight === undefined ? 1 : r.weight, 2), sort: (r) => num(r.weight) },
      { title: "frameworks", cls: "mono", text: (r) => (r.frameworks || []).join(", ") },
      { title: "allocated", text: (r) => fmtResources(r.allocated || r.resources) },
      { title: "dominant share", text: (r) => fmtPct(r.dominant_share), sort: (r) => num(r.dominant_share),
        cell: (r) => h("div", { class: "res" }, fmtPct(r.dominant_share), bar(r.dominant_share, 1)) },
      { title: "quota", text: (r) => quotaText(r.quota) },
    ],
  });

  function taskHealth(task) {
    const statuses = task.statuses || [];
    const last = statuses.length ? statuses[statuses.length - 1] : null;
    if (last && typeof last.healthy === "boolean") return last.healthy ? "healthy" : "unhealthy";
    return "";
  }

  const tasksTable = () => new Table($("tasks"), {
    key: (r) => `${r.frameworkId}/${r.task.id}`,
    emptyText: "no task",
    matcher: () => {
      const wanted = $("tasks").querySelector(".state-filter").value;
      if (!wanted) return null;
      if (wanted === "live") return (r) => !TERMINAL.has(r.task.state);
      if (wanted === "terminal") return (r) => TERMINAL.has(r.task.state);
      return (r) => r.task.state === wanted;
    },
    columns: [
      { title: "id", cls: "mono", text: (r) => r.task.id || "" },
      { title: "name", text: (r) => r.task.name || "" },
      { title: "framework", text: (r) => r.frameworkName || "",
        cell: (r) => h("span", { title: r.frameworkId }, r.frameworkName || "") },
      { title: "agent", text: (r) => r.agentHost || r.agentId,
        cell: (r) => h("span", { title: r.agentId }, r.agentHost || r.agentId) },
      { title: "state", text: (r) => r.task.state || "",
        cell: (r) => h("span", { class: `state ${r.task.state || ""}` }, r.task.state || "") },
      { title: "health", text: (r) => taskHealth(r.task),
        cell: (r) => h("span", { class: taskHealth(r.task) }, taskHealth(r.task)) },
      { title: "logs", sortable: false, text: (r) => (current && current.agentById.has(r.agentId) ? "y" : "n"),
        cell: (r) => {
          if (!current || !current.agentById.has(r.agentId)) return h("span", { class: "sub" }, "agent gone");
          return [
            h("button", { type: "button", class: "log", "data-file": "stdout",
              onclick: () => logs.open(r, "stdout") }, "stdout"),
            " ",
            h("button", { type: "button", class: "log", "data-file": "stderr",
              onclick: () => logs.open(r, "stderr") }, "stderr"),
          ];
        } },
    ],
  });

  let tables = null;
  let summarySignature = null;

  function renderSummary(m) {
    const state = m.state;
    const signature = JSON.stringify([m.totals, m.agents.length, m.frameworks.length, m.byState,
      m.roleList.length, state.id, state.pid, state.elected_time, state.version]);
    if (signature === summarySignature) return false;
    summarySignature = signature;
    $("totals").replaceChildren(...RESOURCES.map((name) => {
      const t = m.totals[name];
      return h("div", { class: "total", "data-resource": name },
        h("h3", null, name),
        h("div", { class: "figure" }, `${fmtRes(name, t.used)} / ${fmtRes(name, t.total)}`),
        bar(t.used, t.total, t.offered),
        h("div", { class: "detail" },
          `${fmtPct(t.total ? t.used / t.total : 0)} used · ${fmtRes(name, t.offered)} offered · ` +
          `${fmtRes(name, Math.max(0, t.total - t.used - t.offered))} free`));
    }));
    const live = m.tasks.filter((r) => !TERMINAL.has(r.task.state)).length;
    const counts = [
      ["agents", m.agents.length],
      ["frameworks", m.frameworks.filter((f) => !f.completed).length],
      ["roles", m.roleList.length],
      ["tasks live", live],
      ["tasks running", m.byState.TASK_RUNNING || 0],
      ["tasks finished", m.byState.TASK_FINISHED || 0],
      ["tasks failed/lost", (m.byState.TASK_FAILED || 0) + (m.byState.TASK_LOST || 0) + (m.byState.TASK_ERROR || 0)],
    ];
    $("counts").replaceChildren(...counts.flatMap(([label, value]) => [
      h("dt", null, label), h("dd", { "data-count": label }, String(value))]));
    const leader = state.leader_info || {};
    const address = leader.address || {};
    const where = address.ip || address.hostname || state.hostname || "";
    $("leader").replaceChildren(
      "leading master ", h("span", { class: "mono" }, state.id || leader.id || "?"),
      ` at ${where}${address.port ? `:${address.port}` : ""}`,
      state.elected_time ? ` · elected ${fmtTime(state.elected_time)}` : "",
      state.start_time ? ` · started ${fmtTime(state.start_time)}` : "",
      ` · version ${state.version || "?"}`);
    return true;
  }

  /** Renders every section from the current model (only the changed ones unless forced). */
  function renderAll(force) {
    if (!current) return;
    const m = current;
    renderSummary(m);
    tables.agents.setRows(m.agents);
    tables.frameworks.setRows(m.frameworks);
    tables.roles.setRows(m.roleList);
    tables.tasks.setRows(m.tasks);
    if (force) {
      summarySignature = null;
      renderSummary(m);
      for (const table of Object.values(tables)) table.refresh(true);
    }
  }

  // -- Polling, freshness, errors, the leader -------------------------------------------------------

  let lastUpdated = null;
  let lastError = null;

  function showBanner(kind, ...content) {
    const banner = $("banner");
    banner.className = `banner ${kind}`;
    banner.replaceChildren(...content);
    banner.hidden = false;
    $("main").classList.add("stale");
  }

  function hideBanner() {
    $("banner").hidden = true;
    $("main").classList.remove("stale");
  }

  function tickUpdated() {
    const text = lastUpdated
      ? `updated ${fmtTime(lastUpdated / 1000)} (${fmtAgo(Date.now() - lastUpdated)})`
      : "not updated yet";
    const el = $("updated");
    if (el.textContent !== text) el.textContent = text;
  }

  /** Explains a failed poll: a standby whose 307 led to another origin, or a master that is gone. */
  async function explainFailure(error) {
    let leader = null;
    try {
      const response = await fetch("/ui/leader", { cache: "no-store", redirect: "manual" });
      if (response.ok) leader = await response.json();
    } catch (e) { leader = null; }
    const since = lastUpdated ? ` The data below is from ${fmtTime(lastUpdated / 1000)}.` : "";
    if (leader && !leader.leading && leader.leader_url) {
      showBanner("warn", "This master does not lead; the leader is at ",
        link(`${leader.leader_url}/`, leader.leader_url), `.${since}`);
    } else if (leader && !leader.leading) {
      showBanner("warn", `No master leads right now (this one is ${leader.role}); retrying.${since}`);
    } else if (error instanceof HttpError && error.status === 503) {
      showBanner("warn", `No master leads right now; retrying.${since}`);
    } else {
      showBanner("error", `Cannot reach the master at ${location.host}: ${error.message}. ` +
        `Retrying every ${POLL_MS / 1000} s.${since}`);
    }
  }

  async function poll() {
    const started = performance.now();
    try {
      const { body: state } = await getJson("/state");
      let rolesDoc = null;
      if (!state.roles) rolesDoc = (await getJson("/roles")).body;
      perf.lastFetchMs = performance.now() - started;
      const renderStart = performance.now();
      current = model(state, rolesDoc);
      renderAll(false);
      perf.lastRenderMs = performance.now() - renderStart;
      perf.maxRenderMs = Math.max(perf.maxRenderMs, perf.lastRenderMs);
      perf.polls += 1;
      lastUpdated = Date.now();
      lastError = null;
      hideBanner();
    } catch (error) {
      perf.failures += 1;
      lastError = error;
      await explainFailure(error);
    }
    tickUpdated();
    setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  // -- Task logs, read through the master's proxy to the agent's /files --------------------------

  const logs = {
    generation: 0,
    timer: null,
    row: null,
    file: "stdout",
    path: null,
    offset: 0,
    text: "",

    status(text) { $("logs-status").textContent = text; },

    show() {
      const pre = $("logs-text");
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = this.text;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    },

    async open(row, file) {
      this.close();
      const generation = ++this.generation;
      this.row = row;
      this.file = file;
      this.text = "";
      $("logs").hidden = false;
      document.body.classList.add("logs-open");
      $("logs-title").textContent = `${file} of task ${row.task.id} (${row.frameworkName}) on ${row.agentHost || row.agentId}`;
      $("logs-stdout").classList.toggle("current", file === "stdout");
      $("logs-stderr").classList.toggle("current", file === "stderr");
      this.status("loading…");
      $("logs-text").textContent = "";
      const agentUrl = `/agents/${encodeURIComponent(row.agentId)}`;
      try {
        const { body: agentState } = await getJson(`${agentUrl}/state`);
        if (generation !== this.generation) return;
        const candidates = [...(agentState.completed_tasks || []), ...(agentState.tasks || [])]
          .filter((t) => t.id === row.task.id && t.framework_id === row.frameworkId);
        const task = candidates[candidates.length - 1];
        if (!task || !task.sandbox) {
          this.status(`agent ${row.agentId} does not know this task (its sandbox may have been removed)`);
          return;
        }
        this.path = `${task.sandbox}/${file}`;
        this.agentUrl = agentUrl;
        const size = await this.read(-1, 0);
        if (generation !== this.generation) return;
        this.offset = Math.max(0, num(size.offset) - LOG_TAIL_BYTES);
        if (this.offset > 0) this.text = `[… showing the last ${LOG_TAIL_BYTES / 1024} KiB]\n`;
        await this.follow(generation);
      } catch (error) {
        if (generation === this.generation) this.status(`cannot read the ${file}: ${error.message}`);
      }
    },

    read(offset, length) {
      const query = new URLSearchParams({ path: this.path, offset: String(offset), length: String(length) });
      return getJson(`${this.agentUrl}/files/read?${query}`).then((r) => r.body);
    },

    /** Reads what is new, shows it, and comes back in LOG_POLL_MS while the panel is open. */
    async follow(generation) {
      try {
        for (;;) {
          const chunk = await this.read(this.offset, LOG_CHUNK_BYTES);
          if (generation !== this.generation) return;
          if (num(chunk.offset) < this.offset) { // truncated: start over
            this.offset = 0;
            this.text = "";
            continue;
          }
          const data = String(chunk.data || "");
          if (!data) break;
          this.offset = num(chunk.offset) + new TextEncoder().encode(data).length;
          this.text += data;
          if (this.text.length > LOG_MAX_CHARS) this.text = this.text.slice(this.text.length - LOG_MAX_CHARS);
          if (data.length < LOG_CHUNK_BYTES / 4) break;
        }
        this.show();
        this.status(`${this.offset} bytes · following · ${fmtTime(Date.now() / 1000)}`);
      } catch (error) {
        if (generation !== this.generation) return;
        this.status(`cannot read the ${this.file}: ${error.message}; retrying`);
      }
      if (generation === this.generation) {
        this.timer = setTimeout(() => this.follow(generation), LOG_POLL_MS);
      }
    },

    close() {
      this.generation += 1;
      clearTimeout(this.timer);
      this.timer = null;
      $("logs").hidden = true;
      document.body.classList.remove("logs-open");
    },
  };

  // -- Start -------------------------------------------------------------------------------------

  function start() {
    const select = $("tasks").querySelector(".state-filter");
    for (const state of TASK_STATES) select.append(h("option", { value: state }, state));
    tables = { agents: agentsTable(), frameworks: frameworksTable(), roles: rolesTable(), tasks: tasksTable() };
    select.addEventListener("change", () => {
      tables.tasks.page = 0;
      tables.tasks.refresh();
    });
    $("logs-close").addEventListener("click", () => logs.close());
    $("logs-stdout").addEventListener("click", () => logs.row && logs.open(logs.row, "stdout"));
    $("logs-stderr").addEventListener("click", () => logs.row && logs.open(logs.row, "stderr"));
    document.addEventListener("visibilitychange", () => { if (!document.hidden) tickUpdated(); });
    setInterval(tickUpdated, 1000);
    poll();
  }

  window.mensaDashboard = {
    perf,
    /** Re-renders every section from the last /state (forced); returns the milliseconds taken. */
    renderAll() {
      const t0 = performance.now();
      if (current) current = model(current.state, current.rolesDoc);
      renderAll(true);
      return performance.now() - t0;
    },
    lastError: () => (lastError ? String(lastError.message) : null),
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
