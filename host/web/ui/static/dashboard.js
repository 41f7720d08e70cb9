// The admin dashboard's live figures: listens to /admin/live (server-sent events, an
// `figures` event with the JSON of the page's figures) and puts each figure into the
// element whose data-f names it ("brokers.0.rate"), and the chart's bars where the
// server placed them. textContent only. The page is complete without this script;
// when the layout's figures changed (a broker added, a failure), it offers a reload.
"use strict";
(function () {
  const root = document.getElementById("dashboard");
  if (!root || !window.EventSource) return;
  const state = document.getElementById("live-state");

  function pick(data, path) {
    let value = data;
    for (const part of path.split(".")) {
      if (value === null || value === undefined) return undefined;
      value = value[part];
    }
    return value;
  }

  function show(node, value) {
    if (value === undefined) return;
    let text;
    if (typeof value === "boolean") text = node.dataset[value ? "yes" : "no"] || String(value);
    else if (value === null) text = node.dataset.none || "";
    else text = String(value);
    if (node.textContent !== text) node.textContent = text;
    if (node.dataset.f === "status") node.className = "status-" + text;
  }

  function bars(chart) {
    const rects = document.querySelectorAll("#chart rect");
    chart.bars.forEach((bar, i) => {
      for (const [k, dir] of [[0, "in"], [1, "out"]]) {
        const rect = rects[2 * i + k];
        if (!rect) continue;
        rect.setAttribute("y", bar[dir][0]);
        rect.setAttribute("height", bar[dir][1]);
      }
    });
  }

  function update(data) {
    for (const node of root.querySelectorAll("[data-f]")) show(node, pick(data, node.dataset.f));
    bars(data.traffic.chart);
    document.getElementById("reshaped").hidden = data.shape === root.dataset.shape;
    root.dataset.updated = String(Number(root.dataset.updated || 0) + 1);
  }

  const source = new EventSource(root.dataset.live);
  source.addEventListener("figures", (event) => {
    state.hidden = true;
    update(JSON.parse(event.data));
  });
  source.addEventListener("error", () => {
    state.textContent = "Live updates paused: the server cannot be reached; trying again.";
    state.hidden = false;
  });
  window.addEventListener("beforeunload", () => source.close());
})();
