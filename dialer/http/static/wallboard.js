// obzvon wallboard: reads /api/floor/stream (server-sent events over fetch, so the bearer
// token travels in a header and never in an address) and updates only what changed: one tile
// per operator, built once and then patched in place, so hundreds of operators stay cheap.
"use strict";

(() => {
  const TOKEN_KEY = "obzvon.token";
  const LIVE_CALL = new Set([
    "queued", "dialing", "ringing", "screening", "answered-waiting", "connecting", "connected",
  ]);
  const CALLS_SHOWN = 100;
  const $ = (id) => document.getElementById(id);

  // -- the bearer token and API calls ------------------------------------------------------
  function takeTokenFromAddress() {
    const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const authHeaders = (extra) => Object.assign({ Authorization: "Bearer " + token() }, extra);

  async function api(method, path, body) {
    const opts = { method, headers: authHeaders(), cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    const type = res.headers.get("content-type") || "";
    const data = type.includes("json") ? await res.json() : await res.text();
    if (!res.ok) {
      const why = (data && (data.error || (data.errors && data.errors.map(
        (e) => e.field + ": " + e.reason).join("; ")))) || res.statusText;
      throw new Error(why);
    }
    return data;
  }

  // -- the daemon's clock (it may run faster than the wall in a simulation) ----------------
  const clock = { server: 0, local: 0, rate: 1, prev: null };
  function observeNow(now, estimateRate) {
    const local = performance.now();
    if (estimateRate && clock.prev) {
      const dl = (local - clock.prev.local) / 1000;
      if (dl > 0.5) clock.rate = Math.min(1000, Math.max(0.01, (now - clock.prev.server) / dl));
    }
    if (estimateRate) clock.prev = { server: now, local };
    clock.server = now;
    clock.local = local;
  }
  const serverNow = () => clock.server + ((performance.now() - clock.local) / 1000) * clock.rate;

  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
  }
  const pct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(1) + "%");
  const num = (x, d = 0) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // -- operator tiles ------------------------------------------------------------------------
  const tiles = new Map(); // operator id -> {node, parts, data}
  const calls = new Map(); // call id -> call payload
  let you = null;

  function tile(id) {
    let t = tiles.get(id);
    if (t) return t;
    const node = el("button", "tile state-offline");
    node.type = "button";
    node.id = "op-" + id;
    node.dataset.operator = id;
    const parts = {
      id: el("span", "op-id", id),
      state: el("span", "op-state"),
      time: el("span", "op-time"),
      call: el("span", "op-call"),
    };
    node.append(parts.id, parts.state, parts.time, parts.call);
    $("tiles").append(node);
    t = { node, parts, data: { operator_id: id } };
    tiles.set(id, t);
    return t;
  }

  function updateOperator(data) {
    if (!data || !data.operator_id) return;
    const t = tile(String(data.operator_id));
    Object.assign(t.data, data);
    const d = t.data;
    const cls = "tile state-" + d.state + (d.registered === false ? " unregistered" : "");
    if (t.node.className !== cls) t.node.className = cls;
    t.node.dataset.state = d.state;
    setText(t.parts.state, d.state === "paused" && d.pause_reason
      ? "paused · " + d.pause_reason : d.state);
    renderTileCall(t);
    renderTileTime(t);
  }

  function renderTileCall(t) {
    const id = t.data.call_id;
    const call = id ? calls.get(id) : null;
    let text = "";
    if (id) text = call ? call.state + " · order " + call.order_id : "call " + id.slice(0, 8);
    setText(t.parts.call, text);
    t.node.dataset.call = id || "";
  }
  function renderTileTime(t) {
    setText(t.parts.time, t.data.since ? duration(serverNow() - t.data.since) : "");
  }

  // -- calls ---------------------------------------------------------------------------------
  function updateCall(data) {
    if (!data || !data.call_id) return;
    if (LIVE_CALL.has(data.state)) {
      const known = calls.get(data.call_id);
      calls.set(data.call_id, Object.assign({ started: data.at }, known, data));
    } else {
      calls.delete(data.call_id);
    }
    if (data.operator_id && tiles.has(String(data.operator_id))) {
      const t = tiles.get(String(data.operator_id));
      if (!t.data.call_id && LIVE_CALL.has(data.state)) t.data.call_id = data.call_id;
      renderTileCall(t);
    }
    scheduleCallList();
  }

  let callListPending = false;
  function scheduleCallList() {
    if (callListPending) return;
    callListPending = true;
    setTimeout(renderCallList, 200); // a burst of call events redraws the list once
  }
  function renderCallList() {
    callListPending = false;
    const list = $("call-list");
    const shown = [...calls.values()].slice(-CALLS_SHOWN).reverse();
    const rows = shown.map((c) => {
      const li = el("li");
      li.dataset.call = c.call_id;
      li.append(
        el("span", "", c.campaign_id || ""),
        el("span", "", c.state),
        el("span", "", c.operator_id ? "op " + c.operator_id : ""),
        el("span", "", "order " + c.order_id),
      );
      return li;
    });
    list.replaceChildren(...rows);
    setText($("calls-count"), String(calls.size));
  }

  // -- campaigns and figures -------------------------------------------------------------------
  const campaigns = new Map();

  function campaignCard(id) {
    let c = campaigns.get(id);
    if (c) return c;
    const node = el("article", "campaign");
    node.id = "camp-" + id;
    const title = el("h2", "", id);
    const flag = el("span", "paused-flag", "paused");
    title.append(flag);
    const abandon = el("span", "abandon ok", "–");
    const dl = el("dl");
    const fields = {};
    for (const [key, label] of [
      ["target", "target"], ["ab1h", "1 h"], ["ab30d", "30 d"], ["dial", "dial level"],
      ["mode", "pacing"], ["answer", "answer rate"], ["progress", "in progress"],
      ["waiting", "waiting"], ["wait", "longest wait"], ["orders", "orders waiting"],
      ["oldest", "oldest order"], ["ttfc", "first call p50/p90"],
    ]) {
      fields[key] = el("dd");
      dl.append(el("dt", "", label), fields[key]);
    }
    const actions = el("div", "camp-actions");
    const toggle = el("button", "", "Pause");
    toggle.type = "button";
    toggle.dataset.campaignAction = "toggle";
    toggle.addEventListener("click", () => {
      const paused = campaigns.get(id).data.paused;
      act("POST", `/api/floor/campaigns/${encodeURIComponent(id)}/${paused ? "resume" : "pause"}`,
        undefined, paused ? `${id} resumed` : `${id} paused`);
    });
    actions.append(toggle);
    const admin = el("span", "camp-admin");
    const target = el("input");
    target.type = "number"; target.step = "0.1"; target.min = "0"; target.max = "5";
    target.title = "abandon target, %";
    const pacing = el("select");
    for (const m of ["progressive", "adaptive", "predictive"]) pacing.append(new Option(m, m));
    const save = el("button", "", "Save");
    save.type = "button";
    save.addEventListener("click", () => {
      const body = { pacing: pacing.value };
      if (target.value !== "") body.abandon_target = Number(target.value) / 100;
      act("PATCH", `/api/floor/campaigns/${encodeURIComponent(id)}`, body, `${id} updated`);
    });
    admin.append("target % ", target, pacing, save);
    admin.hidden = true;
    actions.append(admin);
    node.append(title, abandon, el("span", "small", " abandoned, 24 h"), dl, actions);
    $("campaigns").append(node);
    c = { node, flag, abandon, fields, toggle, admin, target, pacing, data: {}, filled: false };
    campaigns.set(id, c);
    return c;
  }

  function updateCampaign(data) {
    const c = campaignCard(data.campaign_id);
    Object.assign(c.data, data);
    const d = c.data;
    c.flag.hidden = !d.paused;
    setText(c.toggle, d.paused ? "Resume" : "Pause");
    if (d.abandon_warning === undefined) return; // a pause notice only
    setText(c.abandon, pct(d.abandon_rate_24h));
    c.abandon.className = "abandon " + d.abandon_warning;
    const f = c.fields;
    setText(f.target, pct(d.abandon_target));
    setText(f.ab1h, pct(d.abandon_rate_1h));
    setText(f.ab30d, pct(d.abandon_rate_30d));
    setText(f.dial, num(d.dial_level, 2));
    setText(f.mode, d.pacing_mode || "–");
    setText(f.answer, pct(d.answer_rate));
    setText(f.progress, String(d.calls_in_progress));
    setText(f.waiting, String(d.calls_waiting));
    setText(f.wait, duration(d.longest_wait_s));
    setText(f.orders, `${d.orders_due} due / ${d.orders_waiting}`);
    setText(f.oldest, duration(d.oldest_order_age_s));
    setText(f.ttfc, d.ttfc ? `${num(d.ttfc.p50_s, 1)} / ${num(d.ttfc.p90_s, 1)} s` : "–");
    c.admin.hidden = !(you && you.role === "admin");
    if (!c.filled && d.abandon_target !== null && d.abandon_target !== undefined) {
      c.target.value = (d.abandon_target * 100).toFixed(1);
      c.pacing.value = d.pacer || "predictive";
      c.filled = true; // filled once: a refresh must not overwrite what an admin is typing
    }
  }

  // -- inbound lines: callers waiting, service level against its target, speed of answer -----
  const queues = new Map();

  function queueCard(id) {
    let q = queues.get(id);
    if (q) return q;
    const node = el("article", "queue");
    node.id = "line-" + id;
    const level = el("span", "level ok", "–");
    const dl = el("dl");
    const fields = {};
    for (const [key, label] of [
      ["waiting", "waiting"], ["longest", "longest wait"], ["asa", "speed of answer"],
      ["target", "target"], ["offered", "offered"], ["answered", "answered"],
      ["abandoned", "abandoned"], ["callbacks", "callbacks"],
    ]) {
      fields[key] = el("dd");
      dl.append(el("dt", "", label), fields[key]);
    }
    const within = el("span", "small", "");
    node.append(el("h2", "", id), level, within, dl);
    $("queues").append(node);
    q = { node, level, within, fields };
    queues.set(id, q);
    return q;
  }

  function renderQueues(lines) {
    const box = $("queues");
    box.hidden = !Object.keys(lines).length;
    for (const [id, q] of queues) {
      if (!(id in lines)) { q.node.remove(); queues.delete(id); }
    }
    for (const d of Object.values(lines)) {
      const q = queueCard(d.line_id);
      setText(q.level, pct(d.service_level));
      q.level.className = "level " + (d.sl_warning === "below" ? "over" : d.sl_warning);
      setText(q.within, ` answered within ${num(d.service_level_s)} s`);
      const f = q.fields;
      setText(f.waiting, String(d.waiting));
      setText(f.longest, duration(d.longest_wait_s));
      setText(f.asa, d.asa_s === null ? "–" : num(d.asa_s, 1) + " s");
      setText(f.target, pct(d.service_level_target));
      setText(f.offered, String(d.offered));
      setText(f.answered, String(d.answered));
      setText(f.abandoned, String(d.abandoned));
      setText(f.callbacks, String(d.callbacks));
      q.node.classList.toggle("busy", d.waiting > 0);
    }
  }

  function updateFigures(data) {
    if (typeof data.now === "number") observeNow(data.now, true);
    for (const c of Object.values(data.campaigns || {})) updateCampaign(c);
    if (data.queues) renderQueues(data.queues);
    if (data.board) renderBoard(data.board);
    renderCrm(data.crm);
    if (data.today !== undefined) renderToday(data.today);
  }

  function renderBoard(b) {
    const box = $("board-summary");
    const parts = Object.entries(b.by_state || {}).map(([state, n]) => {
      const s = el("span", "state-" + state, `${state} ${n}`);
      return s;
    });
    parts.push(el("span", "", `longest idle ${duration(b.longest_idle_s)}`));
    box.replaceChildren(...parts);
  }

  function renderCrm(crm) {
    const lag = crm && crm.sync_lag_s !== undefined && crm.sync_lag_s !== null
      ? duration(crm.sync_lag_s) : "–";
    setText($("crm-lag"), lag);
    const detail = [];
    if (crm && crm.backlog !== undefined) detail.push(`backlog ${crm.backlog}`);
    if (crm && crm.sla_breaches !== undefined) detail.push(`SLA breaches ${crm.sla_breaches}`);
    setText($("crm-detail"), detail.join(" · "));
  }

  function renderToday(today) {
    const body = $("today").tBodies[0];
    const cats = today && today.categories ? Object.entries(today.categories) : [];
    if (!cats.length) {
      const tr = el("tr");
      const td = el("td", "", "–");
      td.colSpan = 4;
      tr.append(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(...cats.map(([cat, v]) => {
      const tr = el("tr");
      tr.append(el("td", "", cat), el("td", "", String(v.confirmed)),
        el("td", "", String(v.upsells)), el("td", "", num(v.upsell_amount, 0)));
      return tr;
    }));
  }

  function applySnapshot(data) {
    you = data.you || you;
    if (you) setText($("who"), `${you.id} · ${you.role}`);
    updateFigures(data);
    const seen = new Set();
    for (const op of data.operators || []) {
      seen.add(String(op.operator_id));
      updateOperator(op);
    }
    for (const [id, t] of tiles) {
      if (!seen.has(id)) { t.node.remove(); tiles.delete(id); }
    }
    // Calls no operator holds any more and no event closed: drop them on a full resync.
    const held = new Set([...tiles.values()].map((t) => t.data.call_id).filter(Boolean));
    for (const [id, c] of calls) {
      if (!held.has(id) && serverNow() - (c.at || 0) > 600) calls.delete(id);
    }
    scheduleCallList();
  }

  // -- the stream ------------------------------------------------------------------------------
  function handle(event, data) {
    switch (event) {
      case "snapshot": applySnapshot(data); break;
      case "stats": updateFigures(data); break;
      case "operator":
        if (typeof data.since === "number") observeNow(data.since, false);
        updateOperator(data);
        break;
      case "call": updateCall(data); break;
      case "campaign": if (data.campaign_id) updateCampaign(data); break;
      case "crm": renderCrm(data); break;
      case "alert": if (data.kind === "missing-disposition") {
        toast(`operator ${data.operator_id}: no disposition for order ${data.order_id}`, true);
      } break;
      default: break;
    }
  }

  function parseBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length) return;
    try {
      handle(event, JSON.parse(data.join("\n")));
    } catch (err) {
      console.error("bad event", event, err);
    }
  }

  function connState(up, text) {
    const c = $("conn");
    c.className = "conn " + (up ? "up" : "down");
    setText(c, text);
  }

  async function streamOnce() {
    const res = await fetch("/api/floor/stream", { headers: authHeaders(), cache: "no-store" });
    if (res.status === 401 || res.status === 403) {
      const body = await res.json().catch(() => ({}));
      showLogin(body.error || "not allowed");
      return false;
    }
    if (!res.ok || !res.body) throw new Error("stream answered " + res.status);
    connState(true, "live");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        parseBlock(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
    return true;
  }

  let running = false;
  async function run() {
    if (running) return;
    running = true;
    let delay = 1000;
    while (token()) {
      try {
        if (!(await streamOnce())) break;
        delay = 1000;
      } catch (err) {
        console.warn("stream", err);
      }
      connState(false, "reconnecting…");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
    running = false;
  }

  // -- supervisor actions ------------------------------------------------------------------------
  let toastTimer = null;
  function toast(text, bad) {
    const t = $("toast");
    t.textContent = text;
    t.className = "toast" + (bad ? " bad" : "");
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  async function act(method, path, body, done) {
    try {
      await api(method, path, body);
      toast(done, false);
    } catch (err) {
      toast(err.message, true);
    }
  }

  let menuFor = null;
  function openMenu(id, x, y) {
    menuFor = id;
    const m = $("menu");
    setText($("menu-title"), "Operator " + id);
    m.hidden = false;
    m.style.left = Math.min(x, innerWidth - 180) + "px";
    m.style.top = Math.min(y, innerHeight - 260) + "px";
  }

  function onMenu(action) {
    const id = menuFor;
    $("menu").hidden = true;
    if (!id || action === "close") return;
    const base = `/api/floor/operators/${encodeURIComponent(id)}`;
    if (action === "pause") act("POST", base + "/pause", { reason: "supervisor" }, `${id} paused`);
    else if (action === "logout") act("POST", base + "/logout", undefined, `${id} logged out`);
    else act("POST", base + "/spy", { mode: action }, `${action}: your phone rings`);
  }

  // -- sign-in and tabs ------------------------------------------------------------------------
  function showLogin(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("login").hidden = false;
    $("panel-floor").hidden = true;
    $("signout").hidden = true;
    setText($("login-error"), message || "");
    connState(false, "signed out");
  }
  function start() {
    $("login").hidden = true;
    $("panel-floor").hidden = false;
    $("signout").hidden = false;
    run();
  }

  function init() {
    takeTokenFromAddress();
    $("tiles").addEventListener("click", (e) => {
      const t = e.target.closest(".tile");
      if (t) openMenu(t.dataset.operator, e.clientX, e.clientY);
    });
    $("menu").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-action]");
      if (b) onMenu(b.dataset.action);
    });
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      start();
    });
    $("signout").addEventListener("click", () => showLogin(""));
    for (const b of document.querySelectorAll(".tab")) {
      b.addEventListener("click", () => {
        for (const o of document.querySelectorAll(".tab")) o.classList.toggle("active", o === b);
        for (const p of document.querySelectorAll("[data-panel]")) {
          p.hidden = p.dataset.panel !== b.dataset.tab;
        }
      });
    }
    setInterval(() => { for (const t of tiles.values()) renderTileTime(t); }, 1000);
    if (token()) start(); else showLogin("");
  }

  window.obzvon = { api, token, authHeaders, tiles, calls, queues };
  init();
})();
