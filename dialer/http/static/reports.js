// obzvon wallboard, the Reports tab: a report as a table, or as a CSV file to download. Both
// requests carry the bearer token in a header, so the CSV is fetched and saved from a blob.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ob = window.obzvon;
  if (!ob) return;

  function query() {
    const p = new URLSearchParams({
      from: $("report-from").value,
      to: $("report-to").value,
      tz: $("report-tz").value.trim() || "UTC",
    });
    return `${encodeURIComponent($("report-name").value)}?${p}`;
  }

  function status(text) {
    $("report-status").textContent = text;
  }

  function cell(tag, text) {
    const c = document.createElement(tag);
    c.textContent = text === null || text === undefined ? "–" : String(text);
    return c;
  }

  function render(data) {
    const table = $("report-table");
    const head = document.createElement("thead");
    const hr = document.createElement("tr");
    for (const col of data.columns) hr.append(cell("th", col.replaceAll("_", " ")));
    head.append(hr);
    const body = document.createElement("tbody");
    for (const row of data.rows) {
      const tr = document.createElement("tr");
      for (const col of data.columns) {
        const v = row[col];
        tr.append(cell("td", typeof v === "number" && col.endsWith("_rate")
          ? (v * 100).toFixed(1) + "%" : v));
      }
      body.append(tr);
    }
    table.replaceChildren(head, body);
    status(`${data.rows.length} rows, ${data.from} – ${data.to} (${data.tz})`);
  }

  async function show(e) {
    e.preventDefault();
    status("loading…");
    try {
      render(await ob.api("GET", `/api/reports/${query()}`));
    } catch (err) {
      status(err.message);
    }
  }

  async function download() {
    const path = `/api/reports/${query().replace("?", ".csv?")}`;
    status("preparing CSV…");
    const res = await fetch(path, { headers: ob.authHeaders(), cache: "no-store" });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      status(body.error || res.statusText);
      return;
    }
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = (/filename="([^"]+)"/.exec(res.headers.get("content-disposition") || "") ||
      [null, "report.csv"])[1];
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    status("CSV downloaded");
  }

  const today = new Date().toISOString().slice(0, 10);
  $("report-from").value = today;
  $("report-to").value = today;
  $("report-form").addEventListener("submit", show);
  $("report-csv").addEventListener("click", download);
})();
