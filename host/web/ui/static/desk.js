// The agent desk (/desk, host/web/ui/desk.py): fills the page from the JSON API.
//
// Plain JavaScript, no library. htmx was the other choice; it swaps HTML fragments
// that the server renders, while everything the desk shows comes from the JSON API
// (/api/agents/me, /api/interactions, /api/segments, the agent's event stream) that
// programs use too: htmx would need a second set of HTML endpoints repeating the API.
// fetch(), EventSource and a few DOM helpers do it with nothing to vendor or build.
//
// Every unsafe call carries the session's CSRF token (X-CSRF-Token, from
// GET /api/session). Nothing the API answers is parsed as HTML (textContent only).
// A 401 means the session ended: back to the sign-in page. A 404 from the agent API
// means this server has no queue service: the page says so and keeps working (the
// reply box still counts segments).
"use strict";
(function () {
  const HOME = "/desk";
  const desk = {csrf: "", agent: null, open: null, available: true, source: null,
                countSeq: 0, countTimer: null, pending: {}};
  const {$, el, call, reason, problem} = window.smshostPage(HOME, () => desk.csrf);

  function clearProblem() { $("problem").hidden = true; $("problem").textContent = ""; }

  function unavailable(path, answer) {
    desk.available = false;
    if (desk.source) { desk.source.close(); desk.source = null; }
    $("service").textContent = "The queue service is not available on this server " +
      `(${path} answered ${reason(answer)}): offers and conversations cannot be shown. ` +
      "The reply box still counts segments.";
    for (const id of ["status", "reason", "status-set"]) $(id).disabled = true;
  }

  function notAgent(answer) {
    // Signed in, but not an agent (a supervisor or an admin only): nothing to answer here.
    desk.available = false;
    $("service").textContent = "You are not an agent: offers and conversations are for " +
      `users with the agent role (${reason(answer)}).`;
    for (const id of ["status", "reason", "status-set"]) $(id).disabled = true;
  }

  function when(value) {
    if (value === null || value === undefined || value === "") return "";
    const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value)
                                           : new Date(value);
    return isNaN(date.getTime()) ? String(value) : date.toLocaleTimeString();
  }

  // -- the agent: status and offers ------------------------------------------------

  async function loadAgent() {
    const answer = await call("GET", "/api/agents/me");
    if (answer.status === 404 && answer.data && answer.data.error === "not_an_agent") {
      notAgent(answer);
      return;
    }
    if (answer.status === 404) { unavailable("GET /api/agents/me", answer); return; }
    if (answer.status !== 200) {
      $("service").textContent = "Offers and conversations cannot be shown.";
      problem("Reading your agent record", answer);
      return;
    }
    desk.agent = answer.data;
    showAgent(answer.data);
  }

  function showAgent(agent) {
    for (const id of ["status", "reason", "status-set"]) $(id).disabled = false;
    if (!desk.statusEdited) {  // a live update must not undo a choice not yet sent
      $("status").value = agent.status;
      $("reason").value = agent.reason || "";
    }
    let now = `Now ${agent.status}`;
    if (agent.reason) now += ` (${agent.reason})`;
    if (Number.isInteger(agent.load) && Number.isInteger(agent.capacity)) {
      now += ` · ${agent.load} of ${agent.capacity} conversations`;
    }
    if (agent.wrapup_until) now += ` · wrap-up until ${when(agent.wrapup_until)}`;
    $("status-now").textContent = now;
    $("service").textContent = (agent.workgroups || []).length
      ? `Workgroups: ${agent.workgroups.join(", ")}.` : "You are in no workgroup.";
    showOffers(agent.offers || []);
  }

  function showOffers(offers) {
    const list = $("offers");
    list.replaceChildren();
    $("no-offers").hidden = offers.length > 0;
    for (const offer of offers) {
      const item = el("li", null, {"data-interaction": offer.interaction});
      item.append(el("p", `${offer.remote} in ${offer.queue}`, {class: "from"}));
      if (offer.preview) item.append(el("p", offer.preview, {class: "preview"}));
      if (offer.deadline) item.append(el("p", `Answer by ${when(offer.deadline)}`, {class: "quiet"}));
      const accept = el("button", "Accept", {type: "button",
                                             "aria-label": `Accept the offer from ${offer.remote}`});
      const decline = el("button", "Decline", {type: "button",
                                               "aria-label": `Decline the offer from ${offer.remote}`});
      accept.addEventListener("click", () => act(offer.interaction, "accept", undefined, true));
      decline.addEventListener("click", () => act(offer.interaction, "decline"));
      item.append(accept, " ", decline);
      list.append(item);
    }
  }

  async function setStatus(event) {
    event.preventDefault();
    desk.statusEdited = false;
    const body = {status: $("status").value};
    if (body.status === "away" && $("reason").value.trim()) body.reason = $("reason").value.trim();
    const answer = await call("PUT", "/api/agents/me/status", body);
    if (answer.status === 404) { unavailable("PUT /api/agents/me/status", answer); return; }
    if (answer.status !== 200) { problem("Setting your status", answer); return; }
    clearProblem();
    await loadAgent();
  }

  // -- conversations and the thread ------------------------------------------------

  async function loadConversations() {
    const answer = await call("GET", "/api/interactions");
    if (answer.status === 404) { unavailable("GET /api/interactions", answer); return; }
    if (answer.status !== 200) { problem("Listing your conversations", answer); return; }
    const found = answer.data.interactions || [];
    const list = $("conversations");
    list.replaceChildren();
    $("no-conversations").hidden = found.length > 0;
    for (const item of found) {
      const button = el("button", `${item.remote} · ${item.queue} · ${item.state}`,
                        {type: "button", class: "pick", "data-interaction": item.id});
      if (item.id === desk.open) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => openThread(item.id));
      const row = el("li");
      row.append(button);
      list.append(row);
    }
  }

  async function openThread(id) {
    const answer = await call("GET", `/api/interactions/${encodeURIComponent(id)}`);
    if (answer.status !== 200) { problem("Opening the conversation", answer); return; }
    desk.open = id;
    const found = answer.data;
    $("thread-title").textContent = `Conversation with ${found.remote}`;
    $("thread-state").textContent = `${found.queue} · ${found.state}` +
      (found.agent ? ` · with ${found.agent}` : "");
    $("thread-actions").hidden = false;
    $("note-form").hidden = false;
    $("send").disabled = false;
    const messages = $("messages");
    messages.replaceChildren();
    for (const message of found.messages || []) {
      const inbound = message.direction === "in";
      const item = el("li", null, {class: inbound ? "in" : "out"});
      item.append(el("span", inbound ? "They wrote" : "You sent", {class: "quiet"}), " ",
                  el("span", message.text, {class: "text"}), " ",
                  el("span", `${message.status || ""} ${when(message.at)}`.trim(),
                     {class: "quiet status"}));
      messages.append(item);
    }
    const notes = $("notes");
    notes.replaceChildren();
    for (const note of found.notes || []) {
      notes.append(el("li", `${note.author || ""} ${note.text}`.trim()));
    }
    for (const button of $("conversations").querySelectorAll("button.pick")) {
      if (button.dataset.interaction === String(id)) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  async function act(id, action, body, open) {
    const answer = await call("POST", `/api/interactions/${encodeURIComponent(id)}/${action}`, body);
    if (answer.status === 404 && !desk.available) return;
    if (answer.status >= 300) { problem(`${action} of the conversation`, answer); return; }
    clearProblem();
    await loadAgent();
    await loadConversations();
    if (open || desk.open === id) await openThread(id);
    if (open && desk.open === id) $("reply").focus();  // the accepted offer's button is gone
    return answer;
  }

  async function reply(event) {
    event.preventDefault();
    const text = $("reply").value;
    if (desk.open === null || !text.trim()) return;
    const sent = await act(desk.open, "reply", {text});
    if (sent) { $("reply").value = ""; count(); }
  }

  async function transfer(event) {
    event.preventDefault();
    if (desk.open === null) return;
    const sent = await act(desk.open, "transfer", {[$("transfer-kind").value]: $("transfer-to").value});
    if (sent) $("transfer-to").value = "";
  }

  async function note(event) {
    event.preventDefault();
    if (desk.open === null) return;
    const sent = await act(desk.open, "notes", {text: $("note").value});
    if (sent) $("note").value = "";
  }

  // -- the segment counter ---------------------------------------------------------

  function countSoon() {
    clearTimeout(desk.countTimer);
    desk.countTimer = setTimeout(count, 120);
  }

  async function count() {
    const seq = ++desk.countSeq;
    const answer = await call("POST", "/api/segments", {text: $("reply").value});
    if (seq !== desk.countSeq) return;  // a later keystroke's answer is the one shown
    if (answer.status !== 200) {
      $("counter").textContent = `The segment count is not available (${reason(answer)}).`;
      return;
    }
    const d = answer.data;
    let text = `${d.encoding === "ucs2" ? "UCS-2" : "GSM-7"} · ${d.segments} ` +
      `segment${d.segments === 1 ? "" : "s"} · ${d.remaining} characters left`;
    if ((d.non_gsm7 || []).length) text += ` (UCS-2 because of ${d.non_gsm7.slice(0, 5).join(" ")})`;
    $("counter").textContent = text;
  }

  // -- live updates ----------------------------------------------------------------

  function soon(what, run) {  // events in a burst: one reload each
    if (desk.pending[what]) return;
    desk.pending[what] = true;
    setTimeout(() => { desk.pending[what] = false; run(); }, 50);
  }

  function listen() {
    // EventSource reconnects by itself and sends Last-Event-ID: nothing is missed.
    const source = new EventSource("/api/agents/me/events");
    desk.source = source;
    const agent = () => soon("agent", loadAgent);
    const conversations = () => soon("conversations", loadConversations);
    // The stream starts at the newest event: once it is open, read again what the page
    // read before it, so an offer or message that came in between is not missed.
    source.addEventListener("open", () => {
      if (desk.caughtUp) return;
      desk.caughtUp = true;
      agent();
      conversations();
    });
    for (const name of ["offer", "offer_withdrawn", "status"]) source.addEventListener(name, agent);
    for (const name of ["interaction", "message"]) {
      source.addEventListener(name, (event) => {
        conversations();
        let data = {};
        try { data = JSON.parse(event.data); } catch (err) { data = {}; }
        const id = data.interaction || data.id;
        if (desk.open !== null && String(id) === String(desk.open)) {
          soon("thread", () => openThread(desk.open));
        }
      });
    }
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED && desk.source === source) {
        problem("Live updates stopped: reload the page to see new offers and messages.");
      }
    });
  }

  async function start() {
    $("status-form").addEventListener("submit", setStatus);
    for (const id of ["status", "reason"]) {
      $(id).addEventListener("input", () => { desk.statusEdited = true; });
    }
    $("reply-form").addEventListener("submit", reply);
    $("transfer-form").addEventListener("submit", transfer);
    $("note-form").addEventListener("submit", note);
    $("pickup").addEventListener("click", () => desk.open !== null && act(desk.open, "pickup"));
    $("disconnect").addEventListener("click", () => desk.open !== null && act(desk.open, "disconnect"));
    $("reply").addEventListener("input", countSoon);
    $("reply").addEventListener("keydown", (event) => {  // Ctrl+Enter sends
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("reply-form").requestSubmit();
    });
    const session = await call("GET", "/api/session");
    if (session.status !== 200) { problem("Reading your session", session); return; }
    desk.csrf = session.data.csrf_token || "";
    await loadAgent();
    if (!desk.available) return;
    await loadConversations();
    if (desk.available) listen();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
