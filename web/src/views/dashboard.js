// The dashboard: host figures and graph, and every guest with its state,
// type, CPU, memory, disk and address, updated by each snapshot.
import { api } from "../api.js";
import { Series } from "../chart.js";
import { bytes, h, pct, stateBadge } from "../format.js";
import { live, subscribe } from "../live.js";

function hostCards(host) {
  const u = host?.usage || {};
  const card = (label, value, id) => h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value", id }, value));
  return [
    card("Host CPU", pct(u.cpu_pct) + " of " + (host?.cpus ?? "–") + " CPUs", "host-cpu"),
    card("Memory", bytes(u.mem_used) + " / " + bytes(u.mem_limit), "host-mem"),
    card("Guest disks", bytes(u.disk_used) + " / " + bytes(u.disk_size), "host-disk"),
    card("Guest network", "↓ " + bytes(u.net_rx) + " ↑ " + bytes(u.net_tx), "host-net"),
    card("Guests", String(host?.guests ?? "–") + " (" + (host?.states?.running || 0) + " running)", "host-guests"),
  ];
}

function address(g) {
  return g.config?.ip || "–";
}

function row(g) {
  const u = g.usage || {};
  return h("tr", { "data-name": g.name },
    h("td", {}, h("a", { href: "#/guest/" + encodeURIComponent(g.name) }, g.name)),
    h("td", {}, g.type === "vm" ? "VM" : "container"),
    h("td", {}, stateBadge(g.state)),
    h("td", { class: "num cpu" }, g.state === "running" ? pct(u.cpu_pct) : "–"),
    h("td", { class: "num mem" }, g.state === "running" ? bytes(u.mem_used) + " / " + bytes(u.mem_limit) : "–"),
    h("td", { class: "num disk" }, g.state === "running" ? bytes(u.disk_used) + " / " + bytes(u.disk_size) : bytes(g.config?.disk_size)),
    h("td", {}, address(g)));
}

export function dashboard(main) {
  const cards = h("section", { class: "cards", "aria-label": "host" });
  const graphEl = h("div", { class: "graph" });
  const range = h("select", { id: "host-range", "aria-label": "graph range" },
    h("option", { value: "1h" }, "last hour"), h("option", { value: "24h" }, "last day"));
  const tbody = h("tbody");
  const table = h("table", { class: "guests", id: "guests" },
    h("thead", {}, h("tr", {}, ["Name", "Type", "State", "CPU", "Memory used / limit", "Disk used / size", "Address"]
      .map((t) => h("th", { scope: "col" }, t)))), tbody);
  main.replaceChildren(
    h("h1", {}, "Dashboard"), cards,
    h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Host"), range), graphEl),
    h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Guests"),
      h("a", { class: "button", href: "#/create" }, "Create guest")),
    h("div", { class: "scroll" }, table),
    h("p", { class: "empty", id: "no-guests", hidden: true }, "No guests yet.")));

  const chart = new Series(graphEl, "Host CPU and memory", [
    { label: "CPU", key: "cpu_pct", fmt: (v) => v.toFixed(0) + "%" },
    { label: "Memory", key: "mem_used", scale: "bytes", fmt: bytes },
  ]);
  const loadSeries = () => api("GET", "/v1/host/stats?range=" + range.value)
    .then((s) => chart.set(s.samples)).catch(() => {});
  range.addEventListener("change", loadSeries);
  loadSeries();

  const render = () => {
    cards.replaceChildren(...hostCards(live.host));
    tbody.replaceChildren(...live.guests.map(row));
    main.querySelector("#no-guests").hidden = live.guests.length > 0;
  };
  render();
  const unsub = subscribe((kind) => {
    if (kind !== "snapshot") return;
    render();
    if (range.value === "1h") chart.push(live.host?.usage);
  });
  return () => {
    unsub();
    chart.destroy();
  };
}
