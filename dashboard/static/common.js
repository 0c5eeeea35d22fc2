// Shared by the dashboard's pages: the bearer token (from ?token= or the form, kept in this
// tab's sessionStorage and sent as the Authorization header), JSON requests, formatting.
"use strict";

const HR = (() => {
  const TOKEN_KEY = "heartrate-token";
  const root = document.body.dataset.root || "";

  // A ?token= in the address is moved into sessionStorage and removed from the address (and
  // so from the history and from anything copied out of the address bar).
  function takeTokenFromAddress() {
    const url = new URL(window.location.href);
    if (!url.searchParams.has("token")) return;
    const token = url.searchParams.get("token").trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  // GET a JSON endpoint below the application's root: {status, body} (body null when the
  // answer is not JSON); a network failure gives status 0 and the error's text.
  async function getJson(path) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    let response;
    try {
      response = await fetch(root + path, { headers, cache: "no-store", credentials: "omit" });
    } catch (error) {
      return { status: 0, body: { error: "service unreachable: " + error.message } };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = { error: "HTTP " + response.status };
    }
    return { status: response.status, body };
  }

  // The token form: shown on 401/403 or from the "token" link; a submitted token is kept and
  // onChange() runs (the page fetches again at once).
  function setupTokenForm(onChange) {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    document.getElementById("token-link").addEventListener("click", (event) => {
      event.preventDefault();
      showTokenForm("");
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      input.value = "";
      form.hidden = true;
      onChange();
    });
    document.getElementById("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      input.value = "";
      onChange();
    });
  }

  function showTokenForm(reason) {
    document.getElementById("token-form").hidden = false;
    document.getElementById("token-reason").textContent = reason;
  }

  // An answer that is not 200: the token form for 401/403, the message in the status line.
  function showProblem(answer) {
    const message = (answer.body && answer.body.error) || "HTTP " + answer.status;
    if (answer.status === 401) {
      showTokenForm(token() ? "the token was refused: " + message : "this service needs a token");
    } else if (answer.status === 403) {
      showTokenForm("the token may not read this: " + message);
    }
    setStatus(message, true);
    return message;
  }

  function setStatus(text, isError) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // Unix ms as local time: HH:MM:SS today, else with the date.
  function clock(ms) {
    const d = new Date(ms);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  // Seconds as "1 h 05 min", "4 min 03 s", "12 s".
  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s >= 3600) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
    if (s >= 60) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
    return `${s} s`;
  }

  function alertLabel(type) {
    return { HIGH_HEART_RATE: "HIGH", LOW_HEART_RATE: "LOW" }[type] || "none";
  }

  // A new element with a class and text (never HTML).
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Runs fetchOnce now and then every periodMs after each run ends; returns "run now".
  function poll(fetchOnce, periodMs) {
    let timer = null;
    let running = false;
    async function run() {
      if (running) return;
      running = true;
      clearTimeout(timer);
      try {
        await fetchOnce();
      } finally {
        running = false;
        timer = setTimeout(run, periodMs);
      }
    }
    run();
    return run;
  }

  takeTokenFromAddress();
  return { root, token, getJson, setupTokenForm, showProblem, setStatus, clock, duration,
    alertLabel, el, pad, poll };
})();
