// herd dashboard: the herd drawn live from the supervisor's event stream. Plain JS, no build.
//
// /api/events sends `state` (the whole snapshot, herdctl/dashboard/state.py), `log` (new
// log entries) and `probe` (a propagation probe's result). The graph and the table are
// built once per topology and then only updated, so a button is never replaced under the
// pointer. Every address is relative: the page lives under its token (/TOKEN/), and every
// POST also carries the token in a header (X-Herd-Token).
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 760;
  const HEIGHT = 420;
  const RADIUS = 34;
  const MARGIN = { left: 100, right: 100, top: 64, bottom: 78 }; // room for the labels
  const MAX_LOG = 300;
  const token = document.querySelector('meta[name="herd-token"]').content;

  const graph = document.getElementById("graph");
  const tbody = document.querySelector("#nodes tbody");
  const logBox = document.getElementById("log");
  const live = document.getElementById("live");
  const message = document.getElementById("message");
  const probeSource = document.getElementById("probe-source");
  const probeRun = document.getElementById("probe-run");
  const probeResult = document.getElementById("probe-result");

  let shape = ""; // the topology the graph and table were built for
  let nodeViews = {}; // name -> {g, circle, state, facts, rates, probe, row, cells, buttons}
  let linkViews = []; // [{g, ab, ba}]
  let lastProbe = null;
  const seen = new Set(); // log entries shown lately, against the overlap at (re)connect
  const seenOrder = [];

  // -- small helpers ---------------------------------------------------------------------

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:")
      ? document.createElementNS(SVG, tag.slice(4))
      : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds < 0) return "-";
    const s = Math.floor(seconds);
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + pad(Math.floor((s % 3600) / 60)) + "m";
    return Math.floor(s / 86400) + "d" + pad(Math.floor((s % 86400) / 3600)) + "h";
  }

  function value(v) {
    return v === null || v === undefined ? "-" : String(v);
  }

  function rate(rates, key) {
    if (!rates || rates[key] === undefined) return "-";
    const r = rates[key];
    return r >= 100 ? String(Math.round(r)) : r.toFixed(1);
  }

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "";
  }

  function sourceColour(name) {
    if (name === "herdctl") return "#8593a3";
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
    return "hsl(" + h + ", 65%, 65%)";
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "X-Herd-Token": token, "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    let answer = {};
    try {
      answer = await response.json();
    } catch (e) {
      answer = { ok: false, error: response.status + " " + response.statusText };
    }
    if (!response.ok || !answer.ok) throw new Error(answer.error || response.statusText);
    return answer;
  }

  // -- building, once per topology -------------------------------------------------------

  function build(snapshot) {
    graph.replaceChildren();
    tbody.replaceChildren();
    probeSource.replaceChildren();
    nodeViews = {};
    linkViews = [];
    const at = place(snapshot.nodes);
    const links = el("svg:g", { class: "links" });
    for (const link of snapshot.links) {
      const [ax, ay] = at[link.a];
      const [bx, by] = at[link.b];
      const mx = (ax + bx) / 2;
      const my = (ay + by) / 2;
      const g = el("svg:g", { class: "link", "data-link": link.a + "~" + link.b });
      const ab = el("svg:line", { x1: ax, y1: ay, x2: mx, y2: my, "data-from": link.a, "data-to": link.b });
      const ba = el("svg:line", { x1: bx, y1: by, x2: mx, y2: my, "data-from": link.b, "data-to": link.a });
      g.append(ab, ba);
      links.append(g);
      linkViews.push({ g, ab, ba });
    }
    graph.append(links);
    for (const node of snapshot.nodes) {
      const [x, y] = at[node.name];
      const g = el("svg:g", { class: "node", "data-node": node.name, transform: "translate(" + x + " " + y + ")" });
      const ring = el("svg:circle", { class: "ring", r: RADIUS + 7 });
      const circle = el("svg:circle", { class: "body", r: RADIUS });
      const name = el("svg:text", { class: "name", y: -2 }, node.name);
      const state = el("svg:text", { class: "state", y: 14 });
      const facts = el("svg:text", { class: "facts", y: RADIUS + 18 });
      const rates = el("svg:text", { class: "rates", y: RADIUS + 33 });
      const probe = el("svg:text", { class: "probe", y: -RADIUS - 12 });
      const backing = el("svg:rect", { class: "backing", rx: 4 }); // under the labels
      const title = el("svg:title", {}, node.name + " " + node.host + ":" + node.port);
      g.append(title, ring, circle, name, state, backing, facts, rates, probe);
      graph.append(g);
      nodeViews[node.name] = { g, state, facts, rates, probe, backing, ...buildRow(node) };
      probeSource.append(el("option", { value: node.name }, node.name));
    }
    const welsh = snapshot.nodes.find((n) => n.name === "Welsh");
    if (welsh) probeSource.value = welsh.name;
  }

  // The layout's unit square stretched over the drawing, labels kept inside it.
  function place(nodes) {
    const xs = nodes.map((n) => n.x);
    const ys = nodes.map((n) => n.y);
    const scale = (v, lo, hi, from, to) => (hi > lo ? from + ((v - lo) / (hi - lo)) * (to - from) : (from + to) / 2);
    const at = {};
    for (const node of nodes) {
      at[node.name] = [
        scale(node.x, Math.min(...xs), Math.max(...xs), MARGIN.left, WIDTH - MARGIN.right),
        scale(node.y, Math.min(...ys), Math.max(...ys), MARGIN.top, HEIGHT - MARGIN.bottom),
      ];
    }
    return at;
  }

  function buildRow(node) {
    const row = el("tr", { "data-node": node.name });
    const cells = {};
    const columns = [
      ["name", ""], ["state", "state"], ["pid", "num"], ["uptime", "num"],
      ["restarts", "num"], ["links", "num"], ["conns", "num"], ["clients", "num"],
      ["req", "num"], ["in", "num"], ["out", "num"], ["cpu", "num"], ["mem", "num"],
    ];
    for (const [key, cls] of columns) {
      const td = el("td", cls ? { class: cls } : {});
      if (key === "state") td.append(el("span"));
      cells[key] = td;
      row.append(td);
    }
    cells.name.textContent = node.name;
    const actions = el("td", { class: "actions" });
    const buttons = {};
    for (const action of ["start", "stop", "restart"]) {
      const button = el("button", { type: "button", "data-action": action }, action);
      button.addEventListener("click", () => act(node.name, action, button));
      buttons[action] = button;
      actions.append(button);
    }
    const note = el("td", { class: "note" });
    row.append(actions, note);
    tbody.append(row);
    return { row, cells, buttons, note };
  }

  // -- updating, at every state event ----------------------------------------------------

  function render(snapshot) {
    const key = JSON.stringify([snapshot.nodes.map((n) => [n.name, n.x, n.y]), snapshot.links.map((l) => [l.a, l.b])]);
    if (key !== shape) {
      build(snapshot);
      shape = key;
    }
    document.getElementById("config").textContent = snapshot.config;
    document.getElementById("supervisor").textContent = "supervisor pid " + snapshot.supervisor_pid;
    document.getElementById("updated").textContent =
      "updated " + new Date(snapshot.time * 1000).toLocaleTimeString();
    snapshot.links.forEach((link, i) => {
      const view = linkViews[i];
      view.g.setAttribute("data-state", link.state);
      view.ab.setAttribute("data-state", link.ab);
      view.ba.setAttribute("data-state", link.ba);
    });
    for (const node of snapshot.nodes) {
      const view = nodeViews[node.name];
      for (const target of [view.g, view.row]) {
        target.setAttribute("data-state", node.state);
        target.setAttribute("data-health", node.health);
        target.setAttribute("data-pid", node.pid === null ? "" : String(node.pid));
      }
      view.state.textContent = node.state;
      view.facts.textContent = node.pid === null
        ? (node.local ? "no process" : node.host + ":" + node.port)
        : "pid " + node.pid + " \u00b7 up " + duration(node.uptime) + " \u00b7 \u21bb" + value(node.restarts);
      view.rates.textContent = node.rates
        ? rate(node.rates, "requests") + " req/s \u00b7 " + value(node.clients) + " clients"
        : value(node.clients) + " clients";
      back(view);
      const c = view.cells;
      c.state.firstChild.textContent = node.state;
      c.pid.textContent = value(node.pid);
      c.uptime.textContent = duration(node.uptime);
      c.restarts.textContent = value(node.restarts);
      c.links.textContent = node.links_up === null ? "-" : node.links_up + "/" + node.links_expected;
      c.conns.textContent = value(node.connections);
      c.clients.textContent = value(node.clients);
      c.req.textContent = rate(node.rates, "requests");
      c.in.textContent = rate(node.rates, "records_in");
      c.out.textContent = rate(node.rates, "records_out");
      c.cpu.textContent = node.cpu_percent === null ? "-" : node.cpu_percent.toFixed(1);
      c.mem.textContent = node.memory_rss === null ? "-" : (node.memory_rss / 1048576).toFixed(1);
      view.note.textContent = node.message || "";
      const serving = node.state === "RUNNING" || node.state === "STARTING";
      view.buttons.start.disabled = !node.local || serving || node.state === "STOPPING";
      view.buttons.stop.disabled = !node.local || node.state === "STOPPED";
      view.buttons.restart.disabled = !node.local;
    }
    drawProbe();
  }

  // A backing behind a node's two label lines, so no link runs through them.
  function back(view) {
    const boxes = [view.facts, view.rates].map((t) => t.getBBox()).filter((b) => b.width > 0);
    if (!boxes.length) return;
    const x = Math.min(...boxes.map((b) => b.x)) - 4;
    const y = Math.min(...boxes.map((b) => b.y)) - 1;
    const right = Math.max(...boxes.map((b) => b.x + b.width)) + 4;
    const bottom = Math.max(...boxes.map((b) => b.y + b.height)) + 1;
    view.backing.setAttribute("x", x);
    view.backing.setAttribute("y", y);
    view.backing.setAttribute("width", right - x);
    view.backing.setAttribute("height", bottom - y);
  }

  // -- the propagation probe -------------------------------------------------------------

  function drawProbe() {
    for (const [name, view] of Object.entries(nodeViews)) {
      const time = lastProbe && lastProbe.nodes[name];
      view.g.classList.toggle("probed", Boolean(time));
      view.g.classList.toggle("probe-source", Boolean(lastProbe && lastProbe.source === name));
      view.probe.classList.toggle("missed", Boolean(time && time.ms === null));
      if (!time) {
        view.probe.textContent = "";
        view.probe.removeAttribute("data-ms");
      } else if (time.ms === null) {
        view.probe.textContent = "not seen";
        view.probe.setAttribute("data-ms", "");
      } else {
        const label = lastProbe.source === name ? "sent here \u00b7 " : time.hops + " hop" + (time.hops === 1 ? "" : "s") + " \u00b7 ";
        view.probe.textContent = label + time.ms.toFixed(2) + " ms";
        view.probe.setAttribute("data-ms", String(time.ms));
      }
    }
  }

  function showProbe(result) {
    lastProbe = result;
    drawProbe();
    const missed = Object.entries(result.nodes).filter(([, t]) => t.ms === null);
    probeResult.className = missed.length ? "error" : "";
    probeResult.textContent = missed.length
      ? "From " + result.source + ": not seen at " + missed.map(([n, t]) => n + " (" + t.error + ")").join(", ")
      : "From " + result.source + ": every node had it after " + result.all_ms.toFixed(2) + " ms.";
  }

  probeRun.addEventListener("click", async () => {
    probeRun.disabled = true;
    probeResult.className = "muted";
    probeResult.textContent = "Probing from " + probeSource.value + "\u2026";
    try {
      showProbe(await post("api/probe", { source: probeSource.value }));
    } catch (e) {
      probeResult.className = "error";
      probeResult.textContent = "Probe failed: " + e.message;
    } finally {
      probeRun.disabled = false;
    }
  });

  // -- the buttons -----------------------------------------------------------------------

  async function act(name, action, button) {
    button.disabled = true;
    say(action + " " + name + "\u2026", false);
    try {
      const answer = await post("api/nodes/" + encodeURIComponent(name) + "/" + action);
      const notes = (answer.progress || []).join("; ");
      say(action + " " + name + ": done" + (notes ? " (" + notes + ")" : ""), false);
    } catch (e) {
      say(action + " " + name + " failed: " + e.message, true);
    }
  }

  // -- the logs --------------------------------------------------------------------------

  function addLog(data) {
    const atBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 24;
    if (data.skipped) {
      logBox.append(el("div", { class: "entry skipped" }, "\u2026 lines skipped: the logs grow faster than shown"));
    }
    for (const entry of data.entries) {
      const key = entry.source + "\u0000" + entry.time + "\u0000" + entry.text;
      if (seen.has(key)) continue;
      seen.add(key);
      seenOrder.push(key);
      if (seenOrder.length > 2 * MAX_LOG) seen.delete(seenOrder.shift());
      const line = el("div", { class: "entry", "data-source": entry.source });
      const time = entry.time.includes("T") ? entry.time.split("T")[1].replace("Z", "").slice(0, 12) : "";
      const source = el("span", { class: "source" }, entry.source);
      source.style.color = sourceColour(entry.source);
      const text = entry.time ? entry.text.slice(entry.time.length).trimStart() : entry.text;
      line.append(el("span", { class: "time" }, time), source, document.createTextNode(text));
      logBox.append(line);
    }
    while (logBox.childElementCount > MAX_LOG) logBox.firstElementChild.remove();
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  }

  // -- the stream ------------------------------------------------------------------------

  function connect() {
    const events = new EventSource("api/events");
    events.addEventListener("open", () => {
      live.dataset.live = "live";
      live.textContent = "live";
    });
    events.addEventListener("state", (e) => render(JSON.parse(e.data)));
    events.addEventListener("log", (e) => addLog(JSON.parse(e.data)));
    events.addEventListener("probe", (e) => showProbe(JSON.parse(e.data)));
    events.addEventListener("error", async () => {
      live.dataset.live = "reconnecting";
      live.textContent = "reconnecting";
      try {
        const response = await fetch("api/state");
        if (response.status === 404) {
          events.close();
          live.dataset.live = "refused";
          live.textContent = "token no longer valid";
          say("This page's token is no longer valid (a new supervisor?): open the address `herdctl dashboard` prints.", true);
        }
      } catch (e) {
        // the supervisor is away; EventSource keeps retrying
      }
    });
  }

  connect();
})();
