// The jobs page, live: the server says when the store changed; the rows are fetched again, filters kept.
"use strict";
(function () {
  const rows = document.getElementById("rows");
  const live = document.getElementById("live");
  const query = window.location.search;

  function formatDuration(ms) {
    const s = ms / 1000;
    if (s < 10) return s.toFixed(1) + " s";
    const whole = Math.floor(s), h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), r = whole % 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (h) return h + " h " + pad(m) + " min";
    if (m) return m + " min " + pad(r) + " s";
    return r + " s";
  }

  function tick() {
    for (const row of rows.querySelectorAll("tr[data-state=running][data-started]")) {
      const cell = row.querySelector(".duration");
      cell.textContent = formatDuration(Date.now() - Date.parse(row.dataset.started));
    }
  }

  let fetching = null, again = false;
  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = fetch("/api/rows" + query, { credentials: "same-origin" });
    try {
      const response = await fetching;
      if (response.status === 401) { window.location.assign("/login"); return; }
      if (response.ok) {
        rows.innerHTML = await response.text();
        const count = rows.querySelectorAll("tr[data-job-id]").length;
        live.textContent = count + (count === 1 ? " job" : " jobs") + " · updated " + new Date().toLocaleTimeString();
      }
    } finally {
      fetching = null;
      if (again) { again = false; refresh(); }
    }
  }

  const source = new EventSource("/events");
  source.addEventListener("changed", refresh);
  source.addEventListener("hello", refresh);
  setInterval(tick, 1000);
})();
