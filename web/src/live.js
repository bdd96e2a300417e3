// The live view of kvzd: one EventSource on /v1/events/stream. Snapshots
// replace the host and guest lists, "jobs" the job list; guest events
// are kept for the pages.
// Subscribers are called after each change; the browser never polls.
const listeners = new Set();
export const live = { host: null, guests: [], events: [], jobs: null, connected: false, ts: 0 };

function notify(kind, data) {
  for (const fn of listeners) fn(kind, data);
}

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function connect(statusEl) {
  const es = new EventSource("/v1/events/stream");
  es.addEventListener("open", () => {
    live.connected = true;
    statusEl.textContent = "live";
    statusEl.classList.add("on");
  });
  es.addEventListener("error", () => {
    live.connected = false;
    statusEl.textContent = "reconnecting…";
    statusEl.classList.remove("on");
    // The stream also ends with the session (logout elsewhere, expiry):
    // then the login page, rather than reconnecting for ever.
    fetch("/ui/session", { credentials: "same-origin" }).then((r) => {
      if (r.status === 401) location.replace("/ui/login");
    }).catch(() => {});
  });
  es.addEventListener("snapshot", (m) => {
    const s = JSON.parse(m.data);
    live.host = s.host;
    live.guests = s.guests;
    live.ts = s.ts_ms;
    notify("snapshot", s);
  });
  // The newest jobs, whenever one changes (progress included).
  es.addEventListener("jobs", (m) => {
    live.jobs = JSON.parse(m.data);
    notify("jobs", live.jobs);
  });
  es.addEventListener("guest-event", (m) => {
    const e = JSON.parse(m.data);
    live.events.push(e);
    if (live.events.length > 500) live.events.shift();
    notify("event", e);
  });
  return es;
}
