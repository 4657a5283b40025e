// creditgate usage page: reads the admin API with a viewer token kept in sessionStorage.
// The token arrives typed in, or in the URL fragment (#token=…), which browsers never send to
// the server; it is removed from the address bar at once and only ever sent in a header.
"use strict";

(function () {
  const TOKEN_KEY = "creditgate.token";
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#3b5bdb", "#12b886", "#f59f00", "#e64980", "#7048e8", "#15aabf",
    "#fa5252", "#82c91e", "#fd7e14", "#4263eb", "#20c997", "#be4bdb"];
  const $ = (id) => document.getElementById(id);
  const fmt = new Intl.NumberFormat("en-US");
  let refreshTimer = null;

  function takeToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  class HTTPError extends Error {
    constructor(status, body) {
      super((body && body.message) || ("HTTP " + status));
      this.status = status;
      this.code = body && body.code;
    }
  }

  async function api(path) {
    const resp = await fetch(path, {
      headers: { "Authorization": "Bearer " + sessionStorage.getItem(TOKEN_KEY) },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) throw new HTTPError(resp.status, body);
    return body;
  }

  function setNum(id, n, text) {
    const el = $(id);
    el.dataset.value = String(n);
    el.textContent = text !== undefined ? text : fmt.format(n);
  }

  // duration renders seconds as "23 h 59 min", "45 min", "12 s" (days only past 48 hours).
  function duration(sec) {
    sec = Math.max(0, Math.round(sec));
    const d = sec >= 172800 ? Math.floor(sec / 86400) : 0;
    const h = Math.floor((sec - d * 86400) / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
    const parts = [];
    if (d) parts.push(d + " days");
    if (h) parts.push(h + " h");
    if (m && !d) parts.push(m + " min");
    if (s && !d && !h && sec < 600) parts.push(s + " s");
    return parts.length ? parts.join(" ") : "0 s";
  }

  function when(d) {
    return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short", hourCycle: "h23" }) +
      " " + (Intl.DateTimeFormat().resolvedOptions().timeZone || "");
  }

  function level(pct) { return pct >= 95 ? "bad" : pct >= 80 ? "warn" : ""; }

  function showError(err) {
    $("loading").hidden = true;
    const el = $("error");
    if (err instanceof HTTPError && (err.status === 401 || err.status === 403)) {
      // A refused token is of no further use: forget it and ask for another.
      sessionStorage.removeItem(TOKEN_KEY);
      clearInterval(refreshTimer);
      el.textContent = "The token was refused: " + err.message + " Enter a token with the viewer role or higher.";
      $("dashboard").hidden = true;
      $("controls").hidden = true;
      $("login").hidden = false;
    } else {
      el.textContent = "Could not read usage: " + err.message;
    }
    el.hidden = false;
    document.body.dataset.state = "error";
  }

  function renderUsage(u) {
    $("org-name").textContent = u.org;
    $("edition").textContent = u.edition || "custom limit";
    $("window").textContent = duration(u.window_seconds);
    $("asof").textContent = when(new Date(u.as_of));
    $("asof").dateTime = u.as_of;
    setNum("used", u.used_credits);
    setNum("overall", u.overall_credits);
    setNum("percent", u.percent_used, u.percent_used.toFixed(2) + "%");
    $("percent").className = "pct " + level(u.percent_used);
    const fill = $("bar-fill");
    fill.style.width = Math.min(100, u.percent_used) + "%";
    fill.className = "fill " + level(u.percent_used);
    $("bar-max").textContent = fmt.format(u.overall_credits);
    setNum("free", u.daily_free_limit);
    setNum("additional", u.additional_credits);
    setNum("unused", u.unused_credits);
    if (u.next_free_at) {
      const at = new Date(u.next_free_at);
      const secs = (at - new Date(u.as_of)) / 1000;
      setNum("next-free", u.next_free_at, "in " + duration(secs));
      $("next-free-at").textContent = when(at);
    } else {
      setNum("next-free", "", "nothing to free");
      $("next-free-at").textContent = "no credits are in use";
    }
    if (u.concurrency_limit > 0) {
      setNum("concurrency", u.concurrency_in_use, fmt.format(u.concurrency_in_use) + " / " + fmt.format(u.concurrency_limit));
      const pct = 100 * u.concurrency_in_use / u.concurrency_limit;
      $("concurrency-fill").style.width = Math.min(100, pct) + "%";
      $("concurrency-fill").className = "fill " + level(pct);
      $("concurrency-note").textContent = "calls in flight, of the cap";
    } else {
      setNum("concurrency", u.concurrency_in_use, fmt.format(u.concurrency_in_use));
      $("concurrency-fill").style.width = "0";
      $("concurrency-note").textContent = "calls in flight; no cap";
    }
  }

  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // niceMax is the top of the chart's axis: four steps of 1, 2 or 5 × 10^k credits (at
  // least 1), so every tick is a whole number of credits.
  function niceMax(v) {
    const raw = Math.max(1, v / 4);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return 4 * Math.ceil(m * p);
    return 40 * p;
  }

  function renderChart(h) {
    const colors = {};
    h.rules.forEach((r, i) => { colors[r] = PALETTE[i % PALETTE.length]; });
    $("chart-total").dataset.value = String(h.total_credits);
    $("slot-name").textContent = h.slot_seconds === 3600 ? "hour" : duration(h.slot_seconds) + " slot";
    $("chart-total").textContent = fmt.format(h.total_credits) + " credits in " + h.slots.length +
      (h.slot_seconds === 3600 ? " hours." : " slots.");
    document.querySelector(".chart-card h2").textContent = "Consumption in the last " + duration(h.window_seconds);

    const legend = $("legend");
    legend.replaceChildren();
    for (const r of h.rules) {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "sw";
      sw.style.background = colors[r];
      const n = document.createElement("b");
      n.textContent = fmt.format(h.slots.reduce((sum, s) => sum + (s.by_rule[r] || 0), 0));
      li.append(sw, document.createTextNode(r + " "), n);
      legend.append(li);
    }

    const W = 1080, H = 300, L = 52, R = 8, T = 12, B = 30;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, "data-total": h.total_credits });
    const max = niceMax(Math.max(0, ...h.slots.map((s) => s.credits)));
    const plotH = H - T - B, plotW = W - L - R;
    for (let i = 0; i <= 4; i++) {
      const y = T + plotH - plotH * i / 4;
      svg.append(el("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid-line" }));
      svg.append(el("text", { x: L - 8, y: y + 4, "text-anchor": "end", class: "axis" }, fmt.format(max * i / 4)));
    }
    const n = Math.max(1, h.slots.length), slotW = plotW / n, barW = Math.max(2, slotW * 0.72);
    h.slots.forEach((s, i) => {
      const x = L + i * slotW + (slotW - barW) / 2;
      let y = T + plotH;
      const g = el("g", { "data-credits": s.credits, "data-start": s.start });
      const start = new Date(s.start);
      const label = start.toLocaleTimeString([], h.slot_seconds < 60
        ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }
        : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
      g.append(el("title", {}, label + " — " + fmt.format(s.credits) + " credits" +
        Object.keys(s.by_rule).sort((a, b) => s.by_rule[b] - s.by_rule[a]).map((r) => "\n" + r + ": " + fmt.format(s.by_rule[r])).join("")));
      for (const r of h.rules) {
        const c = s.by_rule[r];
        if (!c) continue;
        const bh = plotH * c / max;
        y -= bh;
        g.append(el("rect", { x: x, y: y, width: barW, height: Math.max(bh, 0.5), fill: colors[r], rx: 2 }));
      }
      svg.append(g);
      if (i % 3 === 0 || i === h.slots.length - 1) {
        svg.append(el("text", { x: x + barW / 2, y: H - 10, "text-anchor": "middle", class: "axis" }, label));
      }
    });
    if (h.total_credits === 0) {
      svg.append(el("text", { x: L + plotW / 2, y: T + plotH / 2, "text-anchor": "middle", class: "empty" }, "No credits consumed in this window yet"));
    }
    $("chart").replaceChildren(svg);
  }

  async function renderBilling(org) {
    const now = new Date();
    const from = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString().slice(0, 10);
    const to = now.toISOString().slice(0, 10);
    try {
      const b = await api("/admin/v1/orgs/" + encodeURIComponent(org) + "/billing?from=" + from + "&to=" + to);
      const credits = (b.days || []).reduce((sum, d) => sum + (d.addon_credits || d.additional_calls || 0), 0);
      setNum("billing-credits", credits);
      setNum("billing-amount", b.total_amount_micros, "$" + (b.total_amount_micros / 1e6).toFixed(2));
      $("billing-period").textContent = from + " – " + to;
      $("billing").hidden = false;
    } catch (e) {
      $("billing").hidden = true; // no billing for this org, or not in this version
    }
  }

  async function load() {
    const org = $("org").value;
    if (!org) return;
    try {
      const [u, h] = await Promise.all([
        api("/admin/v1/orgs/" + encodeURIComponent(org) + "/usage"),
        api("/admin/v1/orgs/" + encodeURIComponent(org) + "/usage/hours"),
      ]);
      renderUsage(u);
      renderChart(h);
      await renderBilling(org);
      $("error").hidden = true;
      $("loading").hidden = true;
      $("dashboard").hidden = false;
      document.body.dataset.state = "ready";
    } catch (e) {
      showError(e);
    }
  }

  async function start() {
    const token = takeToken();
    $("controls").hidden = !token;
    if (!token) {
      $("loading").hidden = true;
      $("login").hidden = false;
      document.body.dataset.state = "login";
      return;
    }
    let list;
    try {
      list = (await api("/admin/v1/orgs")).orgs || [];
    } catch (e) {
      showError(e);
      return;
    }
    const sel = $("org");
    sel.replaceChildren();
    for (const o of list) {
      const opt = document.createElement("option");
      opt.value = o.org;
      opt.textContent = o.edition ? o.org + " · " + o.edition : o.org;
      sel.append(opt);
    }
    const wanted = new URLSearchParams(location.search).get("org");
    if (wanted && list.some((o) => o.org === wanted)) sel.value = wanted;
    sel.disabled = list.length === 0;
    if (!list.length) {
      showError(new Error("no orgs are configured"));
      return;
    }
    await load();
    clearInterval(refreshTimer);
    refreshTimer = setInterval(load, 30000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("org").addEventListener("change", () => {
      const q = new URLSearchParams(location.search);
      q.set("org", $("org").value);
      history.replaceState(null, "", location.pathname + "?" + q.toString());
      load();
    });
    $("refresh").addEventListener("click", load);
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      $("login").hidden = true;
      $("error").hidden = true;
      start();
    });
    start();
  });
})();
