// The simulator phone (/admin/simulator): reads the thread again every few seconds while
// the page is open and visible, so the server's replies and their delivery receipts
// appear without a reload. Bounded: one read at a time, every INTERVAL ms, for at most
// LIMIT ms after the page was opened or last used. textContent only.
"use strict";
(function () {
  const INTERVAL = 2000, LIMIT = 30 * 60 * 1000;
  const list = document.getElementById("thread");
  if (!list) return;
  const number = list.dataset.from;
  let until = Date.now() + LIMIT, busy = false, last = "";
  document.addEventListener("keydown", () => { until = Date.now() + LIMIT; });

  function bubble(msg) {
    const mine = msg.direction === "in";
    const item = document.createElement("li");
    item.className = "bubble " + (mine ? "mine" : "theirs");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = mine ? "You" : `Server (${msg.local || ""})`;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = msg.body;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = msg.created_at + " · ";
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = msg.status;
    meta.appendChild(badge);
    item.append(who, text, meta);
    return item;
  }

  async function read() {
    if (busy || document.hidden || Date.now() > until) return;
    busy = true;
    try {
      const response = await fetch("/admin/simulator/thread?from=" + encodeURIComponent(number),
                                   {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!response.ok) return;
      const data = await response.json();
      const seen = JSON.stringify(data.messages);
      if (seen === last || !data.messages.length) { last = seen; return; }
      last = seen;
      list.replaceChildren(...data.messages.map(bubble));
    } catch (err) {
      // the server is restarting or the network is down: the next tick tries again
    } finally {
      busy = false;
    }
  }
  setInterval(read, INTERVAL);
})();
