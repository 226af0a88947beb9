"use strict";
// The status page's only script: polls /api/status every second and draws what it gets.
// Every value is put in the page as text (textContent), never as HTML.
(function () {
  const TOKEN_KEY = "altmesh-status-token";
  const POLL_MS = 1000;
  let token = null;
  function takeToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.has("token")) {
      sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
      history.replaceState(null, "", location.pathname); // the token leaves the address bar
    }
    token = sessionStorage.getItem(TOKEN_KEY);
  }
  takeToken();
  // Opening the address with another #token= does not load the page again: take it from there.
  window.addEventListener("hashchange", () => {
    const polling = Boolean(token);
    takeToken();
    if (!polling && token) poll();
  });
  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "className") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  const dash = (value) => (value === null || value === undefined || value === "" ? "–" : String(value));
  const ms = (value) => (value === null || value === undefined ? "–" : value.toFixed(2) + " ms");
  const clock = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleTimeString() : "–");

  function facts(list, rows) {
    list.replaceChildren();
    for (const [term, value] of rows) {
      list.append(el("dt", { text: term }), el("dd", { text: dash(value) }));
    }
  }

  function rows(tbody, items, cells, empty, rowClass) {
    tbody.replaceChildren();
    if (!items.length) {
      const columns = tbody.parentElement.querySelectorAll("thead th").length;
      tbody.append(el("tr", {}, el("td", { colspan: columns, className: "empty", text: empty })));
      return;
    }
    for (const item of items) {
      const row = el("tr", { className: rowClass ? rowClass(item) : null });
      for (const [value, numeric] of cells(item)) {
        row.append(el("td", { text: dash(value), className: numeric ? "num" : null }));
      }
      tbody.append(row);
    }
  }

  function log(list, items, line, empty) {
    list.replaceChildren();
    if (!items.length) {
      list.append(el("li", { className: "empty", text: empty }));
      return;
    }
    for (const item of items.slice().reverse()) list.append(line(item));
  }

  function notice(text) {
    const box = $("notice");
    box.hidden = !text;
    box.textContent = text || "";
  }

  function badge(state, text) {
    const node = $("link-badge");
    node.dataset.state = state;
    node.textContent = text;
  }

  function render(s) {
    $("role").textContent = s.role;
    $("identity").textContent = s.address + "  key " + s.public_key;
    badge(s.link_state, "link " + s.link_state);
    facts($("link-facts"), [
      ["state", s.link_state],
      ["relay", s.relay_name && s.relay_name !== s.relay ? s.relay_name + " (" + s.relay + ")" : s.relay],
      ["RTT", ms(s.rtt_ms)],
      ["chosen because", s.chosen_because],
      ["connected since", clock(s.connected_since)],
      ["relay changes", s.reconnects],
      ["streams", s.streams_open + " open, " + s.streams_total + " in all"],
      ["bytes", s.bytes_in_text + " in, " + s.bytes_out_text + " out"],
    ]);
    rows($("candidates").tBodies[0], s.candidates, (c) => [
      [c.name],
      [c.endpoints.join(", ")],
      [c.source],
      [c.priority === null ? null : c.priority + " / " + c.weight],
      [ms(c.rtt_ms), true],
      [ms(c.handshake_ms), true],
      [ms(c.score_ms), true],
      [c.state],
    ], "no relay is known", (c) => (c.current ? "current" : null));
    const d = s.discovery || {};
    $("discovery").textContent = !d.enabled
      ? "DNS-SD discovery is off: the configured relays only."
      : d.error
        ? "DNS-SD discovery failed: " + d.error
        : "DNS-SD: " + d.relays + " relays in the set" +
          (d.updated ? ", read at " + clock(d.updated) : "") +
          (d.skipped && d.skipped.length ? "; skipped: " + d.skipped.join(", ") : "");
    rows($("stream-table").tBodies[0], s.open_streams, (t) => [
      [t.stream_id, true],
      [t.kind],
      [t.peer],
      [t.state],
      [t.path.join(" → ")],
      [t.bytes_in_text, true],
      [t.bytes_out_text, true],
    ], "no stream is open");
    const service = s.service_detail;
    facts($("local-facts"), [
      ["SOCKS5", s.socks || "off"],
      ["forwards", s.forwards.length ? s.forwards.join(", ") : "none"],
      ["service", service ? service.name + " → " + service.target +
        (service.ports.length ? " (ports " + service.ports.join(", ") + ")" : " (every port)") : "none"],
    ]);
    log($("error-list"), s.errors, (e) => el("li", { className: "level-" + e.level },
      el("time", { text: clock(e.time) }), " " + e.level + ": " + e.message), "none");
    log($("event-list"), s.security_events, (e) => el("li", {},
      el("time", { text: new Date(e.time).toLocaleTimeString() }),
      " " + e.event + (e.reason && e.reason !== e.event ? " (" + e.reason + ")" : "") +
      (e.peer ? " from " + e.peer : "") + (e.detail ? ": " + e.detail : "")), "none");
    log($("relay-history"), s.relay_events, (e) => el("li", {},
      el("time", { text: clock(e.time) }), " " + e.event + " " + e.relay + ": " + e.detail), "none");
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  async function poll() {
    if (!token) {
      badge("unknown", "no token");
      notice("This page needs its token: open the address that `altmesh status --page-url` prints.");
      return;
    }
    try {
      const response = await fetch("/api/status", {
        headers: { Authorization: "Bearer " + token },
        cache: "no-store",
      });
      if (response.status === 401) {
        badge("unknown", "wrong token");
        notice("The token is wrong or from an earlier run of the node: open the address that " +
          "`altmesh status --page-url` prints.");
      } else {
        render(await response.json());
        notice(null);
      }
    } catch (error) {
      badge("unreachable", "node not answering");
      notice("The node does not answer (is it running?); trying again every second.");
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
