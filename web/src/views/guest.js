// One guest: state, configuration, actions (start, stop, restart,
// destroy with confirmation), live memory resize, snapshots, migration and
// jobs with progress (guest_jobs.js), graphs and its events.
import { api } from "../api.js";
import { openConsole } from "../console.js";
import { Series } from "../chart.js";
import { bytes, h, pct, stateBadge } from "../format.js";
import { live, subscribe } from "../live.js";
import { jobsPanel } from "./guest_jobs.js";

function confirmDialog(text) {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
    document.getElementById("confirm-ok").focus();
  });
}

const CONFIG_LABELS = {
  template: "Template", memory_soft: "Memory soft limit", memory_hard: "Memory hard limit",
  memory: "Memory", memory_target: "Balloon target", cpus: "CPUs", pids: "Pids limit",
  disk_size: "Disk size", disk_mode: "Disk mode", bridge: "Bridge", ip: "Address",
  kernel: "Kernel", initrd: "Initrd", cmdline: "Command line", mac: "MAC", disks: "Disks",
};

// A VM's disks in kvz-vmm's order (vda, vdb, ...), read-only: they change
// with `kvz set --add-disk/--remove-disk`.
const diskList = (v) => v.map((d, i) => "vd" + String.fromCharCode(97 + i) + " " +
  bytes(d.size) + " " + d.format).join(", ");

function configValue(k, v) {
  if (k === "disks" && Array.isArray(v)) return diskList(v);
  if ((k === "pids" || k === "cpus") && !v) return "no limit";
  if (/^memory|disk_size/.test(k) && typeof v === "number") return v ? bytes(v) : "no limit";
  if (Array.isArray(v)) return v.join(" ");
  if (v && typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function configTable(g) {
  const rows = Object.entries(g.config || {}).filter(([k]) => k in CONFIG_LABELS)
    .map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, CONFIG_LABELS[k]), h("td", { id: "cfg-" + k }, configValue(k, v))));
  return h("table", { class: "kv" }, h("tbody", {}, rows));
}

// A VM's disks one by one (the latest sample only): space and I/O since start.
const diskUsage = (disks) => disks.map((d) => d.device + " " + bytes(d.used) + " used, " +
  bytes(d.rd_bytes) + " read, " + bytes(d.wr_bytes) + " written").join("; ");

// A VM's disks one by one on a graph of their own: space used, and bytes
// read and written since kvz-vmm started (the series' and usage's "disks").
const diskFields = (disks) => disks.flatMap((d, i) => [
  { label: d.device + " used", get: (s) => s.disks?.[i]?.used, fmt: bytes },
  { label: d.device + " read", get: (s) => s.disks?.[i]?.rd_bytes, scale: "io", fmt: bytes },
  { label: d.device + " written", get: (s) => s.disks?.[i]?.wr_bytes, scale: "io", fmt: bytes },
]);
const devices = (disks) => (Array.isArray(disks) ? disks.map((d) => d.device).join(",") : "");

function usageLine(g) {
  const u = g.usage;
  if (g.state !== "running" || !u) return "not running";
  const line = "CPU " + pct(u.cpu_pct) + " · memory " + bytes(u.mem_used) + " of " + bytes(u.mem_limit) +
    " · disk " + bytes(u.disk_used) + " of " + bytes(u.disk_size);
  return Array.isArray(u.disks) && u.disks.length ? line + " (" + diskUsage(u.disks) + ")" : line;
}

export function guestPage(main, name) {
  let guest = live.guests.find((g) => g.name === name);
  const status = h("p", { id: "action-status", class: "status", role: "status", "aria-live": "polite" });
  const head = h("div", { class: "guest-head" });
  const usage = h("p", { id: "usage", class: "usage" });
  const config = h("div", { id: "config" });
  const memInput = h("input", { id: "mem-size", name: "memory", placeholder: "512M:1G", autocomplete: "off",
    "aria-describedby": "mem-help mem-error" });
  const memError = h("p", { id: "mem-error", class: "error", role: "alert" });
  const memForm = h("form", { id: "mem-form", class: "inline" },
    h("label", { for: "mem-size" }, "Memory"), memInput,
    h("button", { type: "submit" }, "Apply"),
    h("small", { id: "mem-help" }, " SOFT:HARD or one size (e.g. 256M:512M); live while it runs"), memError);
  const resInputs = {
    cpus: h("input", { id: "res-cpus", name: "cpus", size: 6, placeholder: "0.5", autocomplete: "off" }),
    pids: h("input", { id: "res-pids", name: "pids", size: 6, placeholder: "200", autocomplete: "off" }),
    disk: h("input", { id: "res-disk", name: "disk", size: 6, placeholder: "2G", autocomplete: "off" }),
  };
  const resError = h("p", { id: "res-error", class: "error", role: "alert" });
  const resForm = h("form", { id: "res-form", class: "inline" },
    h("label", { for: "res-cpus" }, "CPUs"), resInputs.cpus,
    h("label", { for: "res-pids" }, "Pids"), resInputs.pids,
    h("label", { for: "res-disk" }, "Disk"), resInputs.disk,
    h("button", { type: "submit" }, "Apply"),
    h("small", {}, " empty fields stay as they are; a disk grows only, while the container runs"), resError);
  const range = h("select", { id: "guest-range", "aria-label": "graph range" },
    h("option", { value: "1h" }, "last hour"), h("option", { value: "24h" }, "last day"));
  const graphEl = h("div", { class: "graph" });
  const ioGraphEl = h("div", { class: "graph" });
  const diskGraphEl = h("div", { id: "disk-graph", class: "graph" });
  const events = h("ol", { id: "guest-events", class: "events" });
  const jobs = jobsPanel(name, confirmDialog);
  const termEl = h("div", { id: "terminal", class: "terminal" });
  const consoleStatus = h("span", { id: "console-status", class: "status", role: "status" });
  let closeConsole = null;
  const consoleButton = h("button", { type: "button", id: "console-open", onclick: () => {
    if (closeConsole) {
      closeConsole();
      closeConsole = null;
      consoleButton.textContent = "Open console";
      termEl.replaceChildren();
      consoleStatus.textContent = "";
      return;
    }
    closeConsole = openConsole(termEl, name, (s) => (consoleStatus.textContent = s));
    consoleButton.textContent = "Close console";
  } }, "Open console");
  const buttons = {};
  const act = (label, fn, cls) => (buttons[label] = h("button", { type: "button", class: cls, onclick: fn }, label));

  async function run(what, fn) {
    status.textContent = what + "…";
    Object.values(buttons).forEach((b) => (b.disabled = true));
    try {
      await fn();
      status.textContent = what + ": done";
    } catch (e) {
      status.textContent = what + " failed: " + e.message;
    }
    refresh();
  }
  const path = "/v1/guests/" + encodeURIComponent(name);
  const actions = h("div", { class: "actions" },
    act("Start", () => run("Start", () => api("POST", path + "/start"))),
    act("Stop", () => run("Stop", () => api("POST", path + "/stop", { timeout: 10 }))),
    act("Force stop", () => run("Force stop", () => api("POST", path + "/stop", { force: true }))),
    act("Restart", () => run("Restart", async () => {
      await api("POST", path + "/stop", { timeout: 10 });
      await api("POST", path + "/start");
    })),
    act("Destroy", async () => {
      if (!(await confirmDialog("Destroy " + name + " and its disk? This cannot be undone."))) return;
      await run("Destroy", () => api("DELETE", path + "?force=1"));
      location.hash = "#/";
    }, "danger"));

  memForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    memError.textContent = "";
    const v = memInput.value.trim();
    if (!/^[0-9.]+[KMGT]?(:[0-9.]+[KMGT]?)?$/i.test(v)) {
      memError.textContent = "want SOFT:HARD or a size such as 512M";
      return;
    }
    try {
      guest = await api("PATCH", path, { memory: v });
      status.textContent = "Memory set to " + v;
      render();
    } catch (e) {
      memError.textContent = e.message;
    }
  });

  resForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    resError.textContent = "";
    const body = {};
    const v = (k) => resInputs[k].value.trim();
    if (v("cpus")) body.cpus = Number(v("cpus"));
    if (v("pids")) body.pids = Number(v("pids"));
    if (v("disk")) body.disk = v("disk");
    if (Object.values(body).some((x) => Number.isNaN(x))) {
      resError.textContent = "CPUs and pids are numbers";
      return;
    }
    if (!Object.keys(body).length) return;
    try {
      guest = await api("PATCH", path, body);
      status.textContent = "Set " + Object.entries(body).map(([k, x]) => k + " " + x).join(", ");
      Object.values(resInputs).forEach((i) => (i.value = ""));
      render();
    } catch (e) {
      resError.textContent = e.message;
    }
  });

  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← Dashboard")), head, status, usage, actions,
    h("section", { class: "panel" }, h("h2", {}, "Configuration"), config, memForm, resForm),
    jobs.el,
    h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Console"),
      h("div", {}, consoleStatus, " ", consoleButton)), termEl),
    h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Usage"), range), graphEl, ioGraphEl, diskGraphEl),
    h("section", { class: "panel" }, h("h2", {}, "Events"), events));
  const chart = new Series(graphEl, "CPU and memory", [
    { label: "CPU", key: "cpu_pct", fmt: (v) => v.toFixed(0) + "%" },
    { label: "Memory", key: "mem_used", scale: "bytes", fmt: bytes },
  ]);
  const ioChart = new Series(ioGraphEl, "Disk used and network received/sent", [
    { label: "Disk", key: "disk_used", fmt: bytes },
    { label: "Received", key: "net_rx", scale: "net", fmt: bytes },
    { label: "Sent", key: "net_tx", scale: "net", fmt: bytes },
  ]);

  // Made (again) once the disks are known or change: one line per disk and figure.
  let diskChart = null, diskSet = "";
  function diskSeries(disks) {
    if (devices(disks) === diskSet) return diskChart;
    if (diskChart) diskChart.destroy();
    diskSet = devices(disks);
    diskChart = diskSet ? new Series(diskGraphEl, "Each disk: used, read and written", diskFields(disks)) : null;
    return diskChart;
  }

  function render() {
    if (!guest) {
      head.replaceChildren(h("h1", {}, name), h("p", {}, "no such guest"));
      return;
    }
    head.replaceChildren(h("h1", {}, name), h("span", { class: "type" }, guest.type === "vm" ? "VM" : "container"),
      h("span", { id: "guest-state" }, stateBadge(guest.state)));
    usage.textContent = usageLine(guest);
    jobs.update(guest);
    config.replaceChildren(configTable(guest));
    const running = guest.state === "running";
    buttons.Start.disabled = running;
    buttons.Stop.disabled = buttons["Force stop"].disabled = buttons.Restart.disabled = !running;
    buttons.Destroy.disabled = false;
    consoleButton.disabled = !running && !closeConsole;
    resInputs.pids.disabled = resInputs.disk.disabled = guest.type === "vm";
  }
  function refresh() {
    api("GET", path).then((g) => {
      guest = g;
      render();
    }).catch(() => {
      guest = null;
      render();
    });
  }
  const loadSeries = () => api("GET", path + "/stats?range=" + range.value).then((s) => {
    chart.set(s.samples);
    ioChart.set(s.samples);
    diskSeries(s.samples.at(-1)?.disks ?? guest?.usage?.disks)?.set(s.samples);
  }).catch(() => {});
  range.addEventListener("change", loadSeries);
  const addEvent = (e) => events.prepend(h("li", {}, new Date(e.ts_ms).toLocaleTimeString() + " " + e.type +
    (e.detail ? ": " + e.detail : "")));
  api("GET", "/v1/events?limit=50&guest=" + encodeURIComponent(name)).then((l) => l.forEach(addEvent)).catch(() => {});
  refresh();
  loadSeries();
  const unsub = subscribe((kind, data) => {
    if (kind === "event" && data.guest === name) addEvent(data);
    if (kind !== "snapshot") return;
    const g = live.guests.find((x) => x.name === name);
    if (g) {
      guest = g;
      render();
      if (range.value === "1h") {
        chart.push(g.usage);
        ioChart.push(g.usage);
        if (g.usage && devices(g.usage.disks) !== diskSet) {
          diskSeries(g.usage.disks); // disks first seen (or changed): their history too
          loadSeries();
        } else if (g.usage) {
          diskChart?.push(g.usage);
        }
      }
    }
  });
  return () => {
    unsub();
    jobs.destroy();
    chart.destroy();
    ioChart.destroy();
    if (diskChart) diskChart.destroy();
    if (closeConsole) closeConsole();
  };
}
