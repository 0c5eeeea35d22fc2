// A hand-written SVG line chart of heart rate over a time window: the normal band shaded, the
// alert limits dashed, the line broken where readings are more than GAP_MS apart (a reading
// alone between such gaps is a dot), readings out of the band marked. No library, nothing fetched.
"use strict";

const HRChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 900;
  const H = 320;
  const M = { left: 44, right: 14, top: 12, bottom: 28 };
  const GAP_MS = 60000;
  const MAX_MARKS = 600;

  function node(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // svg: the <svg> element; ts, bpm: ascending arrays; o: {fromMs, toMs, low, high, min, max}.
  function draw(svg, allTs, allBpm, o) {
    svg.replaceChildren();
    const ts = [];
    const bpm = [];
    for (let i = 0; i < allTs.length; i++) {
      if (allTs[i] >= o.fromMs && allTs[i] <= o.toMs) {
        ts.push(allTs[i]);
        bpm.push(allBpm[i]);
      }
    }
    let lo = Math.min(o.min, o.low - 10);
    let hi = Math.max(o.max, o.high + 10);
    for (const b of bpm) {
      lo = Math.min(lo, b - 5);
      hi = Math.max(hi, b + 5);
    }
    lo = Math.floor(lo / 10) * 10;
    hi = Math.ceil(hi / 10) * 10;
    const x = (t) => M.left + ((t - o.fromMs) / (o.toMs - o.fromMs)) * (W - M.left - M.right);
    const y = (b) => H - M.bottom - ((b - lo) / (hi - lo)) * (H - M.top - M.bottom);

    svg.appendChild(node("rect", { class: "band", x: M.left, y: y(o.high),
      width: W - M.left - M.right, height: Math.max(0, y(o.low) - y(o.high)) }));
    const step = hi - lo > 120 ? 20 : 10;
    for (let b = lo; b <= hi; b += step) {
      svg.appendChild(node("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(b), y2: y(b) }));
      svg.appendChild(node("text", { class: "axis", x: M.left - 6, y: y(b) + 4, "text-anchor": "end" }, String(b)));
    }
    const tick = 10 * 60000;
    for (let t = Math.ceil(o.fromMs / tick) * tick; t <= o.toMs; t += tick) {
      const d = new Date(t);
      svg.appendChild(node("line", { class: "grid", x1: x(t), x2: x(t), y1: M.top, y2: H - M.bottom }));
      svg.appendChild(node("text", { class: "axis", x: x(t), y: H - 8, "text-anchor": "middle" },
        `${HR.pad(d.getHours())}:${HR.pad(d.getMinutes())}`));
    }
    for (const limit of [o.low, o.high]) {
      svg.appendChild(node("line", { class: "limit", x1: M.left, x2: W - M.right, y1: y(limit), y2: y(limit) }));
    }
    if (ts.length === 0) {
      svg.appendChild(node("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" },
        "no readings in the last hour"));
      svg.dataset.points = "0";
      return;
    }
    let path = "";
    for (let i = 0; i < ts.length; i++) {
      const move = i === 0 || ts[i] - ts[i - 1] > GAP_MS;
      path += `${move ? "M" : "L"}${x(ts[i]).toFixed(1)},${y(bpm[i]).toFixed(1)}`;
      const alone = move && (i === ts.length - 1 || ts[i + 1] - ts[i] > GAP_MS);
      if (alone) svg.appendChild(node("circle", { class: "dot", cx: x(ts[i]), cy: y(bpm[i]), r: 2 }));
    }
    svg.appendChild(node("path", { class: "line", d: path }));
    let marks = 0;
    for (let i = ts.length - 1; i >= 0 && marks < MAX_MARKS; i--) {
      const kind = bpm[i] > o.high ? "HIGH" : bpm[i] < o.low ? "LOW" : "";
      if (!kind) continue;
      svg.appendChild(node("circle", { class: "out-" + kind, cx: x(ts[i]), cy: y(bpm[i]), r: 2.5 }));
      marks++;
    }
    const last = ts.length - 1;
    svg.appendChild(node("circle", { class: "last", cx: x(ts[last]), cy: y(bpm[last]), r: 4 }));
    svg.dataset.points = String(ts.length);
  }

  return { draw };
})();
