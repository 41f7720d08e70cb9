// The supervisor view (/desk/supervisor, host/web/ui/supervisor.py): fills the page
// from the supervisors' JSON API and acts through it. Plain JavaScript, no library
// (as desk.js, which says why).
//
// Read: GET /api/queues (each queue's waiting count and oldest wait), GET /api/agents
// (status, reason, load, capacity), GET /api/interactions?state=waiting|offered (the
// lines). Live: the stream GET /api/queues/events (queue and status events), after
// which the page reads again (one read per burst of events). The longest wait counts
// up every second from the server's figure, so the browser's clock does not matter.
// Act: POST /api/interactions/{id}/transfer (reassign) and PUT
// /api/agents/{login}/status, with the session's CSRF token (X-CSRF-Token, from
// GET /api/session). Nothing the API answers is parsed as HTML (textContent only).
"use strict";
(function () {
  const HOME = "/desk/supervisor";
  const STATUSES = ["available", "away", "offline"];
  const view = {csrf: "", queues: [], agents: [], lines: {}, read: 0, source: null,
                pending: false, available: true, drafts: {}};
  const {$, el, call, reason, problem} = window.smshostPage(HOME, () => view.csrf);

  function said(text) { $("problem").hidden = true; $("done").textContent = text; }

  function label(text, more, id) {  // "more" is for screen readers: rows look alike
    const node = el("label", text, {for: id});
    node.append(el("span", more, {class: "sr-only"}));
    return node;
  }

  // A live update draws the lists again: what the supervisor has chosen or typed and not
  // yet sent (a draft, by the control's id) and the focus are kept across it.
  function drafted(control, value) {
    control.value = control.id in view.drafts ? view.drafts[control.id] : value;
    for (const kind of ["input", "change"]) {
      control.addEventListener(kind, () => { view.drafts[control.id] = control.value; });
    }
    return control;
  }

  function sent(...ids) { for (const id of ids) delete view.drafts[id]; }

  function when(value) {
    if (!value) return "";
    const date = new Date(value);
    return isNaN(date.getTime()) ? String(value) : date.toLocaleTimeString();
  }

  function duration(seconds) {
    const whole = Math.max(0, Math.floor(seconds));
    const h = Math.floor(whole / 3600), m = Math.floor(whole / 60) % 60, s = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
  }

  // -- reading ---------------------------------------------------------------------

  async function load() {
    const [queues, agents, waiting, offered] = await Promise.all([
      call("GET", "/api/queues"), call("GET", "/api/agents"),
      call("GET", "/api/interactions?state=waiting&limit=500"),
      call("GET", "/api/interactions?state=offered&limit=500")]);
    view.read = performance.now();
    const focus = document.activeElement && document.activeElement.id;
    for (const [path, answer] of [["GET /api/queues", queues], ["GET /api/agents", agents],
                                  ["GET /api/interactions", waiting],
                                  ["GET /api/interactions", offered]]) {
      if (answer.status === 404) { unavailable(path, answer); return; }
      if (answer.status !== 200) { problem(`Reading ${path}`, answer); return; }
    }
    view.queues = queues.data.queues || [];
    view.agents = agents.data.agents || [];
    view.lines = {};
    for (const item of [...(offered.data.interactions || []),
                        ...(waiting.data.interactions || [])]) {
      (view.lines[item.queue] = view.lines[item.queue] || []).push(item);
    }
    $("service").textContent = `${view.queues.length} queue${view.queues.length === 1 ? "" : "s"}, ` +
      `${view.agents.length} agent${view.agents.length === 1 ? "" : "s"}. Updated live.`;
    showQueues();
    showLines();
    showAgents();
    tick();
    if (focus && $(focus) && document.activeElement !== $(focus)) $(focus).focus();
  }

  function unavailable(path, answer) {
    view.available = false;
    if (view.source) { view.source.close(); view.source = null; }
    $("service").textContent = "The queue service is not available on this server " +
      `(${path} answered ${reason(answer)}).`;
  }

  function reload() {  // events in a burst: one read
    if (view.pending) return;
    view.pending = true;
    setTimeout(() => { view.pending = false; load(); }, 50);
  }

  // -- queues ----------------------------------------------------------------------

  function statusOf(login) {
    const found = view.agents.find((agent) => agent.login === login);
    return found ? found.status : "offline";
  }

  function showQueues() {
    const body = $("queues");
    body.replaceChildren();
    $("no-queues").hidden = view.queues.length > 0;
    for (const queue of view.queues) {
      const row = el("tr", null, {"data-queue": queue.name});
      const counts = {available: 0, away: 0, offline: 0};
      for (const member of queue.members || []) counts[statusOf(member)] += 1;
      const offered = (view.lines[queue.name] || []).filter((i) => i.state === "offered").length;
      row.append(el("th", queue.name, {scope: "row"}),
                 el("td", queue.waiting, {class: "waiting"}),
                 el("td", offered, {class: "offered"}),
                 el("td", queue.oldest_wait === null ? "—" : "", {
                   class: "longest", "data-since": queue.oldest_wait === null ? "" : queue.oldest_wait}));
      for (const status of STATUSES) {
        row.append(el("td", counts[status], {class: status}));
      }
      body.append(row);
    }
  }

  function showLines() {
    const lines = $("lines");
    lines.replaceChildren();
    // An agent's own queue (a transfer to the agent) is not in /api/queues: shown too.
    const known = new Set(view.queues.map((queue) => queue.name));
    const own = Object.keys(view.lines).filter((name) => !known.has(name)).sort()
      .map((name) => ({name, kind: "user", members: [name]}));
    for (const queue of [...view.queues, ...own]) {
      const found = view.lines[queue.name] || [];
      if (!found.length) continue;
      const id = `line-${queue.name}`;
      const part = el("section", null, {"aria-labelledby": id, class: "line",
                                        "data-queue": queue.name});
      const title = queue.kind === "user" ? `In ${queue.name}'s own queue` : `In ${queue.name}`;
      part.append(el("h3", `${title}: ${found.length}`, {id}));
      const list = el("ul", null, {class: "items"});
      for (const item of found) list.append(interaction(item, queue));
      part.append(list);
      lines.append(part);
    }
  }

  function interaction(item, queue) {
    const row = el("li", null, {"data-interaction": item.id, "data-state": item.state});
    row.append(el("p", `${item.remote} · ${item.state}`, {class: "from"}));
    const since = el("p", null, {class: "quiet"});
    since.append(`waiting since ${when(item.queued_at)} (`,
                 el("span", "", {class: "age", "data-at": item.queued_at}), ")");
    row.append(since);
    if (item.offer) {
      row.append(el("p", `offered to ${item.offer.agent}` +
                    (item.offer.deadline ? ` until ${when(item.offer.deadline)}` : ""),
                    {class: "offer"}));
    }
    if (item.preview) row.append(el("p", item.preview, {class: "preview"}));
    row.append(reassignForm(item, queue));
    return row;
  }

  function reassignForm(item, queue) {
    const form = el("form", null, {class: "reassign"});
    const id = `reassign-${item.id}`;
    form.append(label("Reassign to", ` the interaction from ${item.remote}`, id));
    const pick = el("select", null, {id, required: "", "data-interaction": item.id});
    pick.append(el("option", "choose…", {value: ""}));
    const agents = el("optgroup", null, {label: `Agents of ${queue.name}`});
    for (const member of queue.members || []) {
      if (item.offer && item.offer.agent === member) continue;
      agents.append(el("option", `${member} (${statusOf(member)})`, {value: `agent:${member}`}));
    }
    const others = el("optgroup", null, {label: "Other agents"});
    for (const agent of view.agents) {
      if ((queue.members || []).includes(agent.login)) continue;
      if (item.offer && item.offer.agent === agent.login) continue;
      others.append(el("option", `${agent.login} (${agent.status})`, {value: `agent:${agent.login}`}));
    }
    const queues = el("optgroup", null, {label: "Other queues"});
    for (const other of view.queues) {
      if (other.name === queue.name) continue;
      queues.append(el("option", other.name, {
        value: other.kind === "user" ? `agent:${other.name}` : `queue:${other.name}`}));
    }
    pick.append(...[agents, others, queues].filter((group) => group.children.length));
    drafted(pick, "");
    const button = el("button", "Reassign", {type: "submit",
                                             "aria-label": `Reassign the interaction from ${item.remote}`});
    form.append(" ", pick, " ", button);
    form.addEventListener("submit", (event) => reassign(event, item, pick));
    return form;
  }

  async function reassign(event, item, pick) {
    event.preventDefault();
    const choice = pick.value;
    if (!choice) return;
    const [kind, name] = [choice.slice(0, choice.indexOf(":")), choice.slice(choice.indexOf(":") + 1)];
    const answer = await call("POST", `/api/interactions/${encodeURIComponent(item.id)}/transfer`,
                              {[kind]: name});
    if (answer.status !== 200) { problem(`Reassigning the interaction from ${item.remote}`, answer); return; }
    sent(pick.id);
    said(`The interaction from ${item.remote} was reassigned to ${kind} ${name}.`);
    await load();
  }

  // -- agents ----------------------------------------------------------------------

  function showAgents() {
    const list = $("agents");
    list.replaceChildren();
    $("no-agents").hidden = view.agents.length > 0;
    const counts = {available: 0, away: 0, offline: 0};
    for (const agent of view.agents) counts[agent.status] = (counts[agent.status] || 0) + 1;
    $("agents-count").textContent = STATUSES.map((s) => `${counts[s]} ${s}`).join(" · ");
    const order = (a) => STATUSES.indexOf(a.status);
    const sorted = [...view.agents].sort((a, b) => order(a) - order(b) ||
                                         a.login.localeCompare(b.login));
    for (const agent of sorted) list.append(agentItem(agent));
  }

  function agentItem(agent) {
    const name = agent.display_name && agent.display_name !== agent.login
      ? `${agent.display_name} (${agent.login})` : agent.login;
    const item = el("li", null, {"data-agent": agent.login, "data-status": agent.status});
    let now = agent.status + (agent.reason ? ` (${agent.reason})` : "");
    if (agent.since) now += ` since ${when(agent.since)}`;
    item.append(el("p", name, {class: "from"}),
                el("p", `${now} · ${agent.load} of ${agent.capacity} conversations` +
                   (agent.wrapup_until ? ` · wrap-up until ${when(agent.wrapup_until)}` : ""),
                   {class: "state"}));
    const form = el("form", null, {class: "status"});
    const id = `status-${agent.login}`;
    form.append(label("Status", ` of ${agent.login}`, id));
    const pick = el("select", null, {id});
    for (const status of STATUSES) pick.append(el("option", status, {value: status}));
    drafted(pick, agent.status);
    form.append(" ", pick, " ", label("Reason", ` for ${agent.login}`, `reason-${agent.login}`), " ");
    const why = el("input", null, {id: `reason-${agent.login}`, maxlength: "200", size: "10"});
    drafted(why, agent.reason || "");
    const button = el("button", "Set", {type: "submit",
                                        "aria-label": `Set the status of ${agent.login}`});
    form.append(why, " ", button);
    form.addEventListener("submit", (event) => setStatus(event, agent.login, pick, why));
    item.append(form);
    return item;
  }

  async function setStatus(event, login, pick, why) {
    event.preventDefault();
    const body = {status: pick.value};
    if (body.status === "away" && why.value.trim()) body.reason = why.value.trim();
    const answer = await call("PUT", `/api/agents/${encodeURIComponent(login)}/status`, body);
    if (answer.status !== 200) { problem(`Setting the status of ${login}`, answer); return; }
    sent(pick.id, why.id);
    said(`${login} is now ${body.status}${body.reason ? ` (${body.reason})` : ""}.`);
    await load();
  }

  // -- the clock and the stream ----------------------------------------------------

  function tick() {
    const gone = (performance.now() - view.read) / 1000;
    for (const cell of document.querySelectorAll("#queues td.longest")) {
      if (cell.dataset.since !== "") cell.textContent = duration(Number(cell.dataset.since) + gone);
    }
    const now = Date.now();
    for (const age of document.querySelectorAll("#lines .age")) {
      const at = new Date(age.dataset.at).getTime();
      age.textContent = isNaN(at) ? "" : duration((now - at) / 1000);
    }
  }

  function listen() {
    // EventSource reconnects by itself and sends Last-Event-ID: nothing is missed.
    const source = new EventSource("/api/queues/events");
    view.source = source;
    for (const name of ["queue", "status"]) source.addEventListener(name, reload);
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED && view.source === source) {
        problem("Live updates stopped: reload the page to see the queues now.");
      }
    });
  }

  async function start() {
    const session = await call("GET", "/api/session");
    if (session.status !== 200) { problem("Reading your session", session); return; }
    view.csrf = session.data.csrf_token || "";
    // Listening first: the stream starts with the next event, so a change between the
    // first read and the stream's start would otherwise be missed until the next one.
    listen();
    await load();
    if (!view.available) return;
    setInterval(tick, 1000);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
