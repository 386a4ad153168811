// The job page, live: new output appended as it is written, the state as it changes; kill and restart.
"use strict";
(function () {
  const job = document.getElementById("job");
  const id = job.dataset.jobId;
  const status = document.getElementById("action-status");
  const ends = { stdout: Number(job.dataset.stdoutEnd), stderr: Number(job.dataset.stderrEnd) };
  const begins = { stdout: Number(job.dataset.stdoutBegin), stderr: Number(job.dataset.stderrBegin) };
  const PAGE = 65536;

  function append(stream, text) {
    const pre = document.getElementById(stream);
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    pre.append(document.createTextNode(text));
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function stamp(value) { return value ? value.replace("T", " ").replace(/\.\d+Z$|Z$/, "") + " UTC" : ""; }

  function showState(s) {
    const badge = document.getElementById("state");
    badge.textContent = s.state;
    badge.className = "badge " + s.state;
    job.dataset.state = s.state;
    document.getElementById("end").textContent = s.signal || (s.exit_code === null || s.exit_code === undefined ? "" : "exit " + s.exit_code);
    document.getElementById("reason").textContent = s.reason || "";
    document.getElementById("started").textContent = stamp(s.started_at);
    document.getElementById("finished").textContent = stamp(s.finished_at);
    if (s.duration_ms !== null && s.duration_ms !== undefined) {
      document.getElementById("duration").textContent = (s.duration_ms / 1000).toFixed(1) + " s";
    }
    const kill = document.getElementById("kill"), restart = document.getElementById("restart");
    const live = s.state === "running" || s.state === "queued";
    if (kill) kill.disabled = !live;
    if (restart) restart.disabled = live;
  }

  const source = new EventSource("/events/" + id + "?stdout=" + ends.stdout + "&stderr=" + ends.stderr);
  for (const stream of ["stdout", "stderr"]) {
    source.addEventListener(stream, (event) => {
      const chunk = JSON.parse(event.data);
      if (chunk.begin !== ends[stream]) return;
      append(stream, chunk.text);
      ends[stream] = chunk.end;
    });
  }
  source.addEventListener("state", (event) => showState(JSON.parse(event.data)));
  source.addEventListener("reset", () => { source.close(); window.location.reload(); });
  source.addEventListener("gone", (event) => { source.close(); status.textContent = JSON.parse(event.data).message; });

  for (const button of document.querySelectorAll("button.earlier")) {
    button.addEventListener("click", async () => {
      const stream = button.dataset.stream;
      const offset = Math.max(0, begins[stream] - PAGE);
      const url = "/api/jobs/" + id + "/log/" + stream + "?offset=" + offset + "&max_bytes=" + (begins[stream] - offset);
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) { status.textContent = "Could not load earlier output (HTTP " + response.status + ")"; return; }
      const page = await response.json();
      const pre = document.getElementById(stream);
      pre.prepend(document.createTextNode(page.text));
      begins[stream] = page.begin;
      button.hidden = page.begin === 0;
    });
  }

  async function act(form, describe) {
    const response = await fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" });
    const payload = await response.json();
    status.textContent = payload.ok ? describe(payload) : "Refused: " + payload.error.message;
    return payload;
  }

  const killForm = document.getElementById("kill-form");
  if (killForm) {
    killForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const signal = killForm.elements.signal.value;
      if (!window.confirm("Send " + signal + " to job " + id.slice(0, 8) + "?")) return;
      await act(killForm, (p) => "Sent " + p.signal + "; the job is " + p.state + ".");
    });
  }
  const restartForm = document.getElementById("restart-form");
  if (restartForm) {
    restartForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const payload = await act(restartForm, (p) => "Restarted; the job is " + p.state + ".");
      if (payload.ok) window.location.reload();
    });
  }
})();
