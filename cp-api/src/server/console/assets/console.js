// Signet console: progressive enhancement only. Every page works without this script;
// with it, countdowns tick, a sign-in link's code signs in, and the audit tail follows.
"use strict";

function left(ms) {
  if (ms <= 0) return "expired";
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
  const mm = String(m).padStart(h > 0 ? 2 : 1, "0"), ss = String(r).padStart(2, "0");
  return h > 0 ? `in ${h}h ${mm}m ${ss}s` : `in ${mm}m ${ss}s`;
}

function tick() {
  for (const el of document.querySelectorAll("time.countdown[data-expires]")) {
    el.textContent = left(Number(el.dataset.expires) - Date.now());
  }
}

// A link from `meshctl console` carries its one-time code in the fragment, which is never
// sent to a server; submit it as a form and drop it from the address bar and history.
function signInFromFragment() {
  const form = document.getElementById("code-form");
  const match = /^#code=([A-Za-z0-9_-]+)$/.exec(window.location.hash);
  if (!form || !match) return;
  history.replaceState(null, "", window.location.pathname);
  form.querySelector("input[name=code]").value = match[1];
  form.submit();
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  return td;
}

// Appends audit records newer than the last shown, every few seconds.
function followAudit() {
  const table = document.querySelector("[data-tail]");
  if (!table) return;
  const body = table.querySelector("tbody");
  const status = document.getElementById("tail-status");
  async function poll() {
    const url = new URL("/ui/audit/rows", window.location.origin);
    const params = new URLSearchParams(table.dataset.tail);
    params.set("after", table.dataset.after || "0");
    url.search = params.toString();
    try {
      const reply = await fetch(url, { credentials: "same-origin", headers: { "accept": "application/json" } });
      if (!reply.ok) { if (status) status.textContent = `Live tail paused: ${reply.status}`; return; }
      const data = await reply.json();
      for (const r of data.rows) {
        const tr = document.createElement("tr");
        for (const v of [r.time, `${r.writer} #${r.seq}`, r.decision, r.principal, r.resource, r.path, r.policies, r.verified]) {
          tr.appendChild(cell(v));
        }
        const empty = body.querySelector("td.empty");
        if (empty) empty.parentElement.remove();
        body.appendChild(tr);
        table.dataset.after = String(r.id);
      }
      if (status) status.textContent = `Live: ${new Date().toISOString().slice(11, 19)} UTC`;
    } catch (e) {
      if (status) status.textContent = "Live tail paused: the control plane did not answer";
    }
    setTimeout(poll, 3000);
  }
  setTimeout(poll, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  signInFromFragment();
  tick();
  setInterval(tick, 1000);
  followAudit();
});
