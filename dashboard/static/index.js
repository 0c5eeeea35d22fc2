// The list of users with an active alert: GET api/alerts every 2 s.
"use strict";

(() => {
  const PERIOD_MS = 2000;
  const rows = document.getElementById("alert-rows");

  function userLink(user) {
    const a = HR.el("a", "", user);
    a.href = `${HR.root}/users/${encodeURIComponent(user)}`;
    return a;
  }

  function render(body) {
    rows.replaceChildren();
    for (const alert of body.alerts) {
      const tr = HR.el("tr");
      tr.dataset.user = alert.user_id;
      const user = HR.el("td");
      user.appendChild(userLink(alert.user_id));
      const type = HR.el("td");
      type.appendChild(HR.el("span", "badge " + alert.alert_type, HR.alertLabel(alert.alert_type)));
      const since = HR.clock(alert.since_ms);
      const ago = HR.duration((body.now_ms - alert.since_ms) / 1000);
      tr.append(
        user,
        type,
        HR.el("td", "num bpm", alert.bpm === null ? "–" : alert.bpm),
        HR.el("td", "num", alert.bpm_at_ms === null ? "–" : HR.clock(alert.bpm_at_ms)),
        HR.el("td", "num", `${since} (${ago})`),
      );
      rows.appendChild(tr);
    }
    document.getElementById("alerts").hidden = body.alerts.length === 0;
    document.getElementById("empty").hidden = body.alerts.length !== 0;
    const more = document.getElementById("more");
    more.hidden = body.total <= body.shown;
    more.textContent = `showing the newest ${body.shown} of ${body.total} active alerts`;
  }

  async function refresh() {
    const answer = await HR.getJson("/api/alerts");
    if (answer.status !== 200) {
      HR.showProblem(answer);
      return;
    }
    render(answer.body);
    HR.setStatus(`${answer.body.total} active · updated ${HR.clock(answer.body.now_ms)}`, false);
  }

  const now = HR.poll(refresh, PERIOD_MS);
  HR.setupTokenForm(now);
  document.getElementById("open-user").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = document.getElementById("open-user-id").value.trim();
    if (user) window.location.href = `${HR.root}/users/${encodeURIComponent(user)}`;
  });
})();
