// The gridledger dashboard: polls the node's /v1/dashboard (same origin) and redraws; no other host is contacted.
"use strict";
const HISTORY = 300; // points kept in the plots
const times = [], heights = [], rates = [];
let pollMs = 1000;
let marketDrawn = ""; // the market slots last plotted

function el(id) { return document.getElementById(id); }

function cells(row, values, mono) {
  const tr = document.createElement("tr");
  values.forEach((v, i) => {
    const td = document.createElement("td");
    td.textContent = v;
    if (mono && mono.includes(i)) td.className = "mono";
    tr.appendChild(td);
  });
  row.appendChild(tr);
  return tr;
}

function fill(tableId, rows, mono, classOf) {
  const body = el(tableId).querySelector("tbody");
  body.replaceChildren();
  rows.forEach((r) => {
    const tr = cells(body, r.values, mono);
    if (classOf) tr.className = classOf(r) || "";
  });
}

function fmt(x) { return x === null || x === undefined ? "–" : x.toFixed(3); }

function layout(title, unit, xaxis) {
  return { title: { text: title, font: { size: 13 } }, margin: { l: 50, r: 10, t: 35, b: 35 }, xaxis,
    yaxis: { title: { text: unit } } };
}

function plot(id, y, title, unit) {
  // copies: Plotly.react redraws only data it sees as new
  Plotly.react(id, [{ x: times.slice(), y: y.slice(), mode: "lines", line: { shape: "hv" } }],
    layout(title, unit, { type: "date" }), { displayModeBar: false, staticPlot: true });
}

function render(d) {
  const chain = d.chains[0];
  el("node").textContent = `${d.node.id} (${d.node.role})`;
  el("height").textContent = chain.height;
  el("tip").textContent = chain.tip.slice(0, 16);
  el("rate").textContent = d.readings_per_s.toFixed(2);
  const lat = d.latency_s;
  el("latency").textContent = `${fmt(lat.p50)} / ${fmt(lat.p90)} / ${fmt(lat.p99)}`;
  el("latency-n").textContent = `${lat.count} transactions submitted here`;
  const w = d.node.waiting_for_quorum;
  el("quorum-wait").textContent = w ? `height ${w.height} has no quorum for ${w.for_s} s (${w.rounds} round${w.rounds === 1 ? "" : "s"}; ` +
    `${w.votes} of ${w.needed} votes, ${w.refused} refusals); silent committee members: ${w.silent.join(", ") || "none"}` : "";
  el("quorum-wait").style.display = w ? "" : "none";
  const healthy = d.node.sequencer_alive && d.node.store_tampered === null;
  el("health").textContent = healthy ? "healthy" : "UNHEALTHY";
  el("health").className = "value " + (healthy ? "good" : "bad");
  const refused = d.node.requests_refused;
  el("refusals").textContent =
    `ordering-log entries refused: ${d.node.entries_rejected} · throttled: ${refused.peer_rate + refused.node_rate}`;
  const txRefused = d.node.transactions_refused || { api: {}, chain: {} };
  const codes = Object.entries({ ...txRefused.api }).map(([k, n]) => `${k} ${n}`)
    .concat(Object.entries(txRefused.chain).map(([k, n]) => `${k} ${n} (chain)`));
  el("tx-refusals").textContent = "transactions refused: " + (codes.join(", ") || "none");
  fill("chains", d.chains.map((c) => (c.error
    ? { values: ["–", c.url, c.error, "–", "–", "–", "–"], error: true }
    : { values: [c.name, c.node + (c.url ? "" : " (this node)"), c.consensus, c.height, c.tip.slice(0, 16),
      c.prices ? `${c.prices[0]} / ${c.prices[1]}` : "–", Object.entries(c.transactions).map(([k, n]) => `${k} ${n}`).join(", ")] })), [4], (r) => (r.error ? "alarm" : ""));
  fill("alarms", d.alarms.map((a) => ({ values: [a.height, a.code, a.subject, a.raiser] })), [2], () => "alarm");
  el("no-alarms").style.display = d.alarms.length ? "none" : "";
  fill("committees", d.committees.map((b) => ({ values: [b.height, b.txs, b.proposer + (b.failover ? " (took over)" : ""),
    b.signers.join(", ") || "–"], failover: b.failover })), [], (r) => (r.failover ? "failover" : ""));
  renderMarket(d.market);
  renderBills(d.bills);
  times.push(new Date()); heights.push(chain.height); rates.push(d.readings_per_s);
  if (times.length > HISTORY) { times.shift(); heights.shift(); rates.shift(); }
  plot("plot-height", heights, "height", "blocks");
  plot("plot-rate", rates, "readings committed per second", "1/s");
  el("updated").textContent = "updated " + new Date().toLocaleTimeString();
  if (!performance.getEntriesByName("dashboard-first-data").length) performance.mark("dashboard-first-data");
}

function wh(ws) { return (ws / 3600).toFixed(1); }

function renderMarket(m) {
  const t = m.total;
  el("market-total").textContent = `${t.extractions} extractions (EPA ${t.epa_issued_wh.toFixed(1)} Wh, ` +
    `ECA ${t.eca_issued_wh.toFixed(1)} Wh) · ${t.mixes} mixes · ${t.trades} trades, ` +
    `${t.traded_wh.toFixed(1)} Wh traded · ${t.deposits} deposits · ${t.slots} slots`;
  fill("market", m.slots.slice().reverse().map((s) => ({ values: [s.slot, s.extractions,
    `${s.epa_issued_wh.toFixed(1)} / ${s.eca_issued_wh.toFixed(1)}`, s.mixes, s.trades, s.traded_wh.toFixed(1),
    s.deposits] })), []);
  el("no-market").style.display = m.slots.length ? "none" : "";
  el("plot-market").style.display = m.slots.length ? "" : "none";
  const drawn = JSON.stringify(m.slots);
  if (!m.slots.length || drawn === marketDrawn) return; // nothing (new) to plot
  marketDrawn = drawn;
  const x = m.slots.map((s) => s.slot);
  const bars = (y, name) => ({ x, y, name, type: "bar" });
  Plotly.react("plot-market", [bars(m.slots.map((s) => s.epa_issued_wh), "EPA issued"),
    bars(m.slots.map((s) => s.traded_wh), "traded")],
  { ...layout("market per slot", "Wh", { title: { text: "slot" }, type: "category" }), barmode: "group",
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.15 } }, { displayModeBar: false, staticPlot: true });
}

function renderBills(b) {
  const t = b.total;
  const refused = Object.entries(b.refused).map(([k, n]) => `${k} ${n}`).join(", ");
  el("bills-total").textContent = `${t.amount} minor units billed · ${wh(t.energy_ws)} Wh settled · ` +
    `${t.slots} slots, ${t.reports} reports` + (t.audit_failed ? ` · ECA audit failed: ${t.audit_failed}` : "") +
    ` · reports refused: ${refused || "none"}`;
  fill("bills", b.slots.slice().reverse().map((s) => ({ values: [s.slot, s.meters, wh(s.energy_ws), s.amount,
    s.audit_failed ? `${s.audit_failed} failed` : "ok"], failed: s.audit_failed > 0 })), [], (r) => (r.failed ? "alarm" : ""));
  el("no-bills").style.display = b.slots.length ? "none" : "";
}

async function poll() {
  try {
    const r = await fetch("/v1/dashboard", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const d = await r.json();
    pollMs = d.poll_ms || pollMs;
    render(d);
  } catch (e) {
    el("updated").textContent = "node unreachable: " + e.message;
  }
  setTimeout(poll, pollMs);
}
poll();
