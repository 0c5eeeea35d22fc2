// One user's live page: GET api/users/<id> every second. The readings of the last hour are kept
// here and refreshed incrementally (from OVERLAP_MS before the newest one held, so late
// arrivals in that span show too), with a full reload every FULL_EVERY polls.
"use strict";

(() => {
  const PERIOD_MS = 1000;
  const HOUR_MS = 3600000;
  const OVERLAP_MS = 120000;
  const FULL_EVERY = 60;
  const MODELS = { PERCENT_HRMAX: "%HRmax", HEART_RATE_RESERVE: "heart-rate reserve", CUSTOM: "custom" };
  const user = document.body.dataset.user;
  const readings = new Map(); // ts_ms -> bpm
  let polls = 0;

  function dayStart() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  }

  function merge(r, nowMs) {
    for (const ts of [...readings.keys()]) {
      if (ts >= r.from_ms || ts < nowMs - HOUR_MS) readings.delete(ts);
    }
    for (let i = 0; i < r.ts_ms.length; i++) readings.set(r.ts_ms[i], r.bpm[i]);
  }

  function sorted() {
    const ts = [...readings.keys()].sort((a, b) => a - b);
    return { ts, bpm: ts.map((t) => readings.get(t)) };
  }

  function renderAlert(body) {
    const card = document.getElementById("alert-card");
    const a = body.alert;
    card.className = "card alert-" + (a.active ? a.alert_type : "NONE");
    const state = document.getElementById("alert-state");
    state.textContent = a.active ? `${HR.alertLabel(a.alert_type)} heart rate` : "no active alert";
    state.dataset.alert = a.active ? a.alert_type : "NONE";
    document.getElementById("alert-since").textContent = a.active
      ? `since ${HR.clock(a.since_ms)} (${HR.duration((body.now_ms - a.since_ms) / 1000)})`
      : "";
  }

  function renderLatest(body) {
    const latest = body.latest;
    document.getElementById("latest-bpm").textContent = latest ? latest.bpm : "–";
    document.getElementById("latest-at").textContent = latest
      ? `at ${HR.clock(latest.ts_ms)} (${HR.duration((body.now_ms - latest.ts_ms) / 1000)} ago)`
      : "no readings yet";
  }

  function renderHour(series) {
    const stats = document.getElementById("hour-stats");
    const count = document.getElementById("hour-count");
    if (series.bpm.length === 0) {
      stats.textContent = "–";
      count.textContent = "no readings in the last hour";
      return;
    }
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (const b of series.bpm) {
      min = Math.min(min, b);
      max = Math.max(max, b);
      sum += b;
    }
    const avg = sum / series.bpm.length;
    stats.textContent = `${min}–${max}`;
    count.textContent = `bpm range; average ${avg.toFixed(0)} over ${series.bpm.length} readings`;
  }

  function renderThresholds(t) {
    const rows = document.getElementById("threshold-rows");
    rows.replaceChildren();
    const items = [
      ["normal band (alerts outside)", `${t.normal_low_bpm}–${t.normal_high_bpm} bpm`],
      ["accepted readings", `${t.valid_min_bpm}–${t.valid_max_bpm} bpm`],
      ["alert raised after", `${t.alert_sustain_seconds} s out of the band`],
      ["alert cleared after", `${t.alert_clear_readings} normal readings`],
    ];
    for (const [name, value] of items) {
      const tr = HR.el("tr");
      tr.append(HR.el("th", "", name), HR.el("td", "num", value));
      rows.appendChild(tr);
    }
  }

  function renderZones(z) {
    const table = document.getElementById("zones");
    const rows = document.getElementById("zone-rows");
    document.getElementById("zones-note").textContent = z.note;
    table.hidden = !z.available;
    rows.replaceChildren();
    if (!z.available) {
      document.getElementById("zones-meta").textContent = "";
      return;
    }
    for (const zone of z.zones) {
      const tr = HR.el("tr");
      tr.append(
        HR.el("td", "", `zone ${zone.index}`),
        HR.el("td", "num", zone.upper_bpm > zone.lower_bpm
          ? `${zone.lower_bpm}–${zone.upper_bpm}` : `${zone.lower_bpm}+`),
        HR.el("td", "num", HR.duration(zone.seconds)),
      );
      rows.appendChild(tr);
    }
    const below = HR.el("tr");
    below.append(HR.el("td", "", "below zones"), HR.el("td", "num", ""),
      HR.el("td", "num", HR.duration(z.below_zones_seconds)));
    rows.appendChild(below);
    document.getElementById("zones-meta").textContent =
      `${MODELS[z.model] || z.model} zones, HRmax ${z.hr_max_bpm} bpm; ${z.reading_count} readings, ` +
      `average ${z.average_bpm} bpm, TRIMP ${z.banister_trimp} (Banister) / ` +
      `${z.edwards_trimp} (Edwards); no data ${HR.duration(z.no_data_seconds)}; ` +
      `computed ${HR.clock(z.computed_at_ms)}`;
  }

  async function refresh() {
    const full = readings.size === 0 || polls % FULL_EVERY === 0;
    polls++;
    let query = `day_start_ms=${dayStart()}`;
    if (!full) {
      let newest = 0;
      for (const ts of readings.keys()) newest = Math.max(newest, ts);
      query += `&since_ms=${newest - OVERLAP_MS}`;
    }
    const answer = await HR.getJson(`/api/users/${encodeURIComponent(user)}?${query}`);
    if (answer.status !== 200) {
      HR.showProblem(answer);
      if (answer.status === 404 || answer.status === 400) {
        document.getElementById("user-main").hidden = true;
      }
      return;
    }
    const body = answer.body;
    merge(body.readings, body.now_ms);
    const series = sorted();
    document.getElementById("user-main").hidden = false;
    renderAlert(body);
    renderLatest(body);
    renderHour(series);
    renderThresholds(body.thresholds);
    renderZones(body.zones);
    HRChart.draw(document.getElementById("chart"), series.ts, series.bpm, {
      fromMs: body.now_ms - HOUR_MS,
      toMs: body.now_ms,
      low: body.thresholds.normal_low_bpm,
      high: body.thresholds.normal_high_bpm,
      min: 40,
      max: 180,
    });
    HR.setStatus(`updated ${HR.clock(body.now_ms)} · every ${PERIOD_MS / 1000} s`, false);
  }

  const now = HR.poll(refresh, PERIOD_MS);
  HR.setupTokenForm(() => {
    readings.clear();
    now();
  });
})();
