// The monitor page: reads the JSON endpoints of ops/monitor/app.py and draws them.
// Every value from the pipeline is set with textContent, never as HTML: dead letters are
// untrusted bytes by definition.
"use strict";

const interval = 1000 * Number(document.body.dataset.interval || 5);

function cell(row, value, cls) {
  const td = row.insertCell();
  td.textContent = value === null || value === undefined ? "-" : String(value);
  if (cls) td.className = cls;
  return td;
}

function fill(tbody, items, render) {
  tbody.replaceChildren();
  items.forEach((item) => render(tbody.insertRow(), item));
}

function showError(id, message) {
  const el = document.getElementById(id);
  el.hidden = !message;
  el.textContent = message || "";
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function stamp(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "-";
}

function renderServices(services) {
  fill(document.querySelector("#services tbody"), services, (row, s) => {
    row.dataset.service = s.name;
    row.className = s.up ? "up" : (s.core ? "down core" : "down");
    cell(row, s.name, "name");
    cell(row, s.up ? "up" : "down", "state");
    cell(row, s.version); cell(row, s.pid); cell(row, s.rss_mb); cell(row, s.address); cell(row, s.detail, "detail");
  });
}

function renderLag(lag) {
  fill(document.querySelector("#lag tbody"), lag.partitions, (row, p) => {
    row.dataset.partition = p.partition;
    cell(row, p.topic); cell(row, p.partition); cell(row, p.end_offset); cell(row, p.committed); cell(row, p.lag, "lag");
  });
  showError("lag-error", lag.error ? `lag unavailable: ${lag.error}` : "");
}

function renderTally(counts) {
  const el = document.getElementById("dead-letter-tally");
  if (counts.error) { el.textContent = `unavailable: ${counts.error}`; return; }
  const parts = Object.entries(counts.by_stage).map(([stage, n]) => `${stage}: ${n}`);
  el.textContent = counts.exists ? `${counts.scanned} dead letter(s)${parts.length ? " — " + parts.join(", ") : ""}` : "no dead-letter topic yet: none";
}

async function refreshStatus() {
  try {
    const status = await getJSON("/api/status");
    renderServices(status.services);
    renderLag(status.lag);
    renderTally(status.dead_letters);
    document.getElementById("state-line").textContent = status.stream.state_line || status.stream.error || "-";
    document.getElementById("updated").textContent = `sampled ${stamp(status.sampled_at * 1000)} UTC`;
    showError("failure", status.failure ? `the last sample failed: ${status.failure}` : "");
  } catch (error) {
    showError("failure", `status: ${error.message}`);
  }
}

function chart(id, title, traces, yTitle) {
  const layout = { title: { text: title, font: { size: 14 } }, margin: { t: 36, r: 10, b: 36, l: 50 }, height: 240,
                   yaxis: { title: { text: yTitle }, rangemode: "tozero" }, showlegend: traces.length > 1 };
  Plotly.react(id, traces, layout, { displayModeBar: false, responsive: true });
}

async function refreshCharts() {
  const { samples } = await getJSON("/api/history");
  const x = samples.map((s) => new Date(s.t * 1000));
  chart("chart-throughput", "throughput", [{ x, y: samples.map((s) => s.rows_per_second), mode: "lines", name: "rows/s" }], "rows/s");
  chart("chart-freshness", "freshness", [{ x, y: samples.map((s) => s.freshness_seconds), mode: "lines", name: "s" }], "seconds waiting");
  const partitions = [...new Set(samples.flatMap((s) => Object.keys(s.lag || {})))].sort();
  chart("chart-lag", "lag per partition", partitions.map((p) => ({ x, y: samples.map((s) => (s.lag || {})[p] ?? null), mode: "lines", name: p })), "records");
}

function payloadText(letter) {
  if (letter.payload_format === "hex") return `hex (${letter.decode_error}):\n${letter.payload}`;
  return JSON.stringify(letter.payload, null, 2);
}

async function refreshDeadLetters() {
  const stage = document.getElementById("dead-letter-stage").value;
  try {
    const body = await getJSON(`/api/dead-letters?limit=50${stage ? "&stage=" + encodeURIComponent(stage) : ""}`);
    const tbody = document.querySelector("#dead-letters tbody");
    tbody.replaceChildren();
    body.dead_letters.forEach((letter) => {
      const row = tbody.insertRow();
      row.className = "letter";
      row.dataset.position = `${letter.topic}/${letter.partition}/${letter.offset}`;
      cell(row, stamp(letter.timestamp_ms)); cell(row, letter.stage, "stage"); cell(row, letter.reason, "reason");
      cell(row, row.dataset.position, "position"); cell(row, letter.source); cell(row, letter.schema_id, "schema-id");
      const toggle = cell(row, `${letter.payload_format}, ${letter.size} bytes ▸`, "payload-toggle");
      const detail = tbody.insertRow();
      detail.hidden = true;
      const pre = document.createElement("pre");
      pre.className = "payload";
      pre.textContent = payloadText(letter);
      const td = detail.insertCell(); td.colSpan = 7; td.appendChild(pre);
      toggle.addEventListener("click", () => { detail.hidden = !detail.hidden; });
    });
    showError("dead-letters-error", "");
  } catch (error) {
    showError("dead-letters-error", `dead letters unavailable: ${error.message}`);
  }
}

let subjects = [];

function options(select, values) {
  const keep = select.value;
  select.replaceChildren(...values.map((v) => new Option(String(v), String(v))));
  if (values.map(String).includes(keep)) select.value = keep;
}

function syncVersions() {
  const subject = subjects.find((s) => s.subject === document.getElementById("diff-subject").value);
  const versions = subject ? subject.versions : [];
  options(document.getElementById("diff-old"), versions);
  options(document.getElementById("diff-new"), versions);
  if (versions.length > 1 && document.getElementById("diff-old").value === document.getElementById("diff-new").value) {
    document.getElementById("diff-old").value = String(versions[versions.length - 2]);
    document.getElementById("diff-new").value = String(versions[versions.length - 1]);
  }
}

async function refreshSubjects() {
  try {
    subjects = (await getJSON("/api/subjects")).subjects;
    fill(document.querySelector("#subjects tbody"), subjects, (row, s) => {
      row.dataset.subject = s.subject;
      cell(row, s.subject, "subject"); cell(row, s.versions.join(", "), "versions");
      cell(row, Object.entries(s.ids).map(([v, id]) => `v${v}: ${id}`).join(", "));
    });
    options(document.getElementById("diff-subject"), subjects.map((s) => s.subject));
    syncVersions();
    showError("subjects-error", "");
  } catch (error) {
    showError("subjects-error", `schemas unavailable: ${error.message}`);
  }
}

function describe(side) {
  if (!side) return "-";
  return JSON.stringify(side.type) + (side.has_default ? ` = ${JSON.stringify(side.default)}` : "");
}

async function showDiff() {
  const subject = document.getElementById("diff-subject").value;
  const old = document.getElementById("diff-old").value, neu = document.getElementById("diff-new").value;
  const verdict = document.getElementById("diff-verdict");
  try {
    const diff = await getJSON(`/api/subjects/${encodeURIComponent(subject)}/diff?old=${old}&new=${neu}`);
    verdict.textContent = diff.backward_compatible
      ? `v${old} → v${neu}: BACKWARD compatible (v${neu} reads data written with v${old})`
      : `v${old} → v${neu}: NOT backward compatible: ${diff.problems.join("; ")}`;
    fill(document.querySelector("#diff tbody"), diff.fields, (row, f) => {
      row.dataset.field = f.name;
      row.className = f.change;
      cell(row, f.name); cell(row, f.change + (f.what.length ? ` (${f.what.join(", ")})` : ""), "change");
      cell(row, describe(f.from)); cell(row, describe(f.to));
    });
  } catch (error) {
    verdict.textContent = `diff unavailable: ${error.message}`;
  }
}

async function refreshDagRuns() {
  const view = await getJSON("/api/dag-runs");
  fill(document.querySelector("#dag-runs tbody"), view.runs, (row, r) => {
    row.dataset.runId = r.run_id;
    cell(row, r.run_id); cell(row, r.state, "state"); cell(row, r.run_type); cell(row, r.run_after); cell(row, r.start_date); cell(row, r.end_date);
  });
  showError("dag-runs-error", view.error ? `unavailable: ${view.error}` : (view.runs.length ? "" : "no runs yet"));
}

function every(ms, fn) {
  const run = () => fn().catch((error) => showError("failure", error.message));
  run();
  setInterval(run, ms);
}

document.getElementById("diff-subject").addEventListener("change", syncVersions);
document.getElementById("diff-go").addEventListener("click", showDiff);
document.getElementById("dead-letter-stage").addEventListener("change", refreshDeadLetters);
every(interval, refreshStatus);
every(interval, refreshCharts);
every(Math.max(interval, 10000), refreshDeadLetters);
every(30000, refreshSubjects);
every(Math.max(interval, 15000), refreshDagRuns);
