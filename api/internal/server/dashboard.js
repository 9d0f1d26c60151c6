"use strict";
const $ = (id) => document.getElementById(id);
let token = new URLSearchParams(location.hash.slice(1)).get("token") || localStorage.getItem("takt-token") || "";
if (token) localStorage.setItem("takt-token", token);
$("save").onclick = () => { token = $("token").value.trim(); localStorage.setItem("takt-token", token); refresh(); };

async function api(path) {
  const r = await fetch("/api/v1" + path, { headers: { Authorization: "Bearer " + token } });
  const body = await r.json();
  if (!r.ok) throw new Error((body.error && body.error.message) || r.statusText);
  return body;
}
const pct = (v) => v == null ? "–" : (100 * v).toFixed(1) + "%";
function setKpi(id, v, text) { const e = $(id); e.textContent = text; e.dataset.value = v == null ? "" : String(v); }
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

let equipment = [];
async function refresh() {
  if (!token) { $("login").hidden = false; return; }
  try {
    $("status").textContent = "updating…";
    if (!equipment.length) {
      equipment = (await api("/equipment")).equipment;
      const lines = [...new Set(equipment.map((e) => e.line))];
      $("line").innerHTML = lines.map((l) => `<option>${esc(l)}</option>`).join("");
      $("line").onchange = refresh;
    }
    const line = $("line").value;
    const now = new Date();
    const to = new Date(Math.ceil(now / 3600e3) * 3600e3);
    const from = new Date(to - 24 * 3600e3);
    const range = `from=${from.toISOString()}&to=${to.toISOString()}`;
    const oee = await api(`/lines/${encodeURIComponent(line)}/oee?bucket=hour&${range}`);
    const t = oee.total;
    setKpi("line-oee", t.oee, pct(t.oee));
    setKpi("line-a", t.availability, pct(t.availability));
    setKpi("line-p", t.performance, pct(t.performance) + (t.performance_above_100 ? " ⚠" : ""));
    setKpi("line-q", t.quality, pct(t.quality));
    setKpi("line-good", t.good_count, String(t.good_count));
    setKpi("line-coverage", t.coverage, pct(t.coverage));
    $("line-coverage-kpi").className = "kpi" + (t.partial ? " partial" : "");
    $("partial-note").hidden = !t.partial && !oee.buckets.some((b) => b.partial);
    $("hours").innerHTML = oee.buckets.slice().reverse().map((b) => `<tr data-start="${b.start}" data-oee="${b.oee ?? ""}"
      data-partial="${b.partial ? 1 : 0}" class="${b.partial ? "partial" : ""}" title="data coverage ${pct(b.coverage)}${(b.anomalies || []).map((a) => ", " + a).join("")}">
      <td>${new Date(b.start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}</td>
      <td>${pct(b.oee)}</td><td>${pct(b.availability)}</td><td>${pct(b.performance)}</td><td>${pct(b.quality)}</td>
      <td>${b.good_count} / ${b.total_count}</td><td><div class="bar" style="width:${Math.min(100, 100 * (b.oee || 0))}%"></div></td></tr>`).join("");

    const eqs = equipment.filter((e) => e.line === line);
    const tlFrom = new Date(now - 8 * 3600e3);
    const rows = [], pareto = [];
    for (const e of eqs) {
      const c = encodeURIComponent(e.code);
      const [eo, tl, dt] = await Promise.all([
        api(`/equipment/${c}/oee?bucket=hour&${range}`),
        api(`/equipment/${c}/timeline?from=${tlFrom.toISOString()}&to=${now.toISOString()}`),
        api(`/equipment/${c}/downtime?${range}`),
      ]);
      const span = now - tlFrom;
      const bars = tl.intervals.map((iv) => {
        const l = 100 * (new Date(iv.start) - tlFrom) / span, w = 100 * (new Date(iv.end) - new Date(iv.start)) / span;
        return `<span class="${iv.state}" style="left:${l}%;width:${w}%" title="${iv.state} ${iv.reason || ""}"></span>`;
      }).join("");
      rows.push(`<div class="eq" data-equipment="${esc(e.code)}"><strong>${esc(e.code)}</strong>
        <span data-testid="eq-oee" data-value="${eo.total.oee ?? ""}">OEE ${pct(eo.total.oee)}</span><div class="timeline">${bars}</div></div>`);
      for (const r of dt.reasons) pareto.push({ eq: e.code, ...r });
    }
    $("equipment").innerHTML = rows.join("");
    pareto.sort((a, b) => b.duration_s - a.duration_s);
    $("pareto").innerHTML = pareto.map((r) => `<tr data-equipment="${esc(r.eq)}" data-seconds="${r.duration_s}"><td>${esc(r.eq)}</td>
      <td>${r.state}</td><td data-testid="reason" data-code="${r.reason}">${esc(r.reason_name || (r.reason ? "code " + r.reason : "–"))}</td><td>${(r.duration_s / 60).toFixed(1)}</td><td>${r.count}</td></tr>`).join("");
    $("status").textContent = "updated " + now.toLocaleTimeString();
    $("status").className = "muted";
    document.body.dataset.ready = "1";
  } catch (err) {
    $("status").textContent = err.message;
    $("status").className = "err";
    if (/token/.test(err.message)) $("login").hidden = false;
  }
}
refresh();
setInterval(refresh, 10000);
