// Queue notices (/admin/settings/notices): a workgroup queue's overrides of the
// [queue.notices] defaults, read and written through the queue sink's API
// (GET/PUT /api/queues/{name}/notices) with the session's CSRF token. Each setting shows
// the queue's value; "Use the default" removes its override (null). textContent only.
"use strict";
(function () {
  const HOME = "/admin/settings/notices";
  const box = document.getElementById("notices");
  if (!box) return;
  const {$, el, call, problem} = window.smshostPage(HOME, () => box.dataset.csrf);
  let current = null;

  function input(name, value) {
    if (typeof value === "boolean") {
      const node = el("input", null, {type: "checkbox", id: "n-" + name});
      node.checked = value;
      return node;
    }
    if (typeof value === "number") return el("input", null, {type: "number", step: "any",
                                                              id: "n-" + name, value: String(value)});
    const text = Array.isArray(value) ? value.join(", ") : String(value);
    const node = el("textarea", null, {id: "n-" + name, rows: "2"});
    node.value = text;
    return node;
  }

  function draw(data) {
    current = data;
    const holder = $("notice-fields");
    holder.replaceChildren();
    for (const [name, fallback] of Object.entries(data.defaults)) {
      const overridden = Object.prototype.hasOwnProperty.call(data.overrides, name);
      const row = el("div", null, {class: "field notice"});
      row.append(el("label", name, {for: "n-" + name}), input(name, data.effective[name]));
      const keep = el("input", null, {type: "checkbox", id: "d-" + name});
      keep.checked = !overridden;
      const def = Array.isArray(fallback) ? fallback.join(", ") : String(fallback);
      row.append(el("span", null, {class: "check"}));
      row.lastChild.append(keep, el("label", `Use the default (${def})`, {for: "d-" + name}));
      holder.append(row);
    }
    $("notice-form").hidden = false;
  }

  function valueOf(name) {
    const node = $("n-" + name), fallback = current.defaults[name];
    if (typeof fallback === "boolean") return node.checked;
    if (typeof fallback === "number") return Number(node.value);
    if (Array.isArray(fallback)) return node.value.split(",").map((s) => s.trim()).filter(Boolean);
    return node.value;
  }

  async function open(name) {
    $("saved").textContent = "";
    const answer = await call("GET", `/api/queues/${encodeURIComponent(name)}/notices`);
    if (answer.status !== 200) return problem("Reading the queue's notices", answer);
    $("problem").hidden = true;
    draw(answer.data);
  }

  $("notice-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const name of Object.keys(current.defaults)) {
      body[name] = $("d-" + name).checked ? null : valueOf(name);
    }
    const answer = await call("PUT", `/api/queues/${encodeURIComponent(current.name)}/notices`, body);
    if (answer.status !== 200) return problem("Saving the notices", answer);
    $("problem").hidden = true;
    draw(answer.data);
    $("saved").textContent = "Saved.";
  });

  $("queue").addEventListener("change", () => open($("queue").value));

  (async function start() {
    const answer = await call("GET", "/api/queues");
    if (answer.status !== 200) return problem("Reading the queues", answer);
    const groups = answer.data.queues.filter((q) => q.kind === "workgroup");
    if (!groups.length) {
      return problem("No workgroup queue exists yet: create a workgroup on the People page.");
    }
    $("queue").replaceChildren(...groups.map((q) => el("option", q.name, {value: q.name})));
    open(groups[0].name);
  })();
})();
