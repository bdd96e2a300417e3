// A guest's snapshots (VMs) or backups (containers) on its page: the list
// with Restore and Delete after confirming, and a form that starts a new
// one with an optional name checked in the browser as kvzd checks it.
// Creating and restoring are jobs, shown by guest_jobs.js.
import { api } from "../api.js";
import { bytes, h } from "../format.js";

// What differs between the two (ids keep the snapshot ones the tests use).
export const SNAPSHOTS = {
  collection: "snapshots", prefix: "snap", noun: "snapshot", button: "Take", maxLen: 63,
  columns: ["Snapshot", "Taken", "Size", "VM was"],
  cells: (s) => [s.running ? "running" : "stopped"],
  restoreWarning: "What it did since is lost.",
};
export const BACKUPS = {
  collection: "backups", prefix: "backup", noun: "backup", button: "Back up", maxLen: 40,
  columns: ["Backup", "Made", "Size"],
  cells: () => [],
  restoreWarning: "The container is stopped, its files replaced, and started again if it ran.",
};

// kind: SNAPSHOTS or BACKUPS; start(method, url, body) runs a request and
// shows its error; setError(text) shows a browser-side one.
export function itemsSection(kind, name, confirmDialog, start, setError) {
  const path = "/v1/guests/" + encodeURIComponent(name) + "/" + kind.collection;
  const rows = h("tbody", { id: kind.collection });
  const input = h("input", { id: kind.prefix + "-name", name: kind.noun, placeholder: "name (optional)",
    autocomplete: "off", size: 16 });
  const label = kind.noun[0].toUpperCase() + kind.noun.slice(1);
  const form = h("form", { id: kind.prefix + "-form", class: "inline" },
    h("label", { for: kind.prefix + "-name" }, label), input,
    h("button", { type: "submit", id: kind.prefix + "-take" }, kind.button));
  const el = h("div", {},
    h("table", { class: "kv " + kind.collection }, h("thead", {}, h("tr", {},
      ...kind.columns.map((c) => h("th", {}, c)), h("th", {}, ""))), rows), form);

  function row(s) {
    const item = path + "/" + encodeURIComponent(s.name);
    const restore = async () => {
      if (!(await confirmDialog("Return " + name + " to " + kind.noun + " " + s.name + "? " + kind.restoreWarning)))
        return;
      start("POST", item + "/restore");
    };
    const del = async () => {
      if (!(await confirmDialog("Delete " + kind.noun + " " + s.name + "?"))) return;
      await start("DELETE", item);
      load();
    };
    return h("tr", { id: kind.prefix + "-" + s.name }, h("td", {}, s.name),
      h("td", {}, new Date(s.created_ms).toLocaleString()), h("td", {}, bytes(s.size)),
      ...kind.cells(s).map((c) => h("td", {}, c)),
      h("td", {}, h("button", { type: "button", onclick: restore }, "Restore"), " ",
        h("button", { type: "button", class: "danger", onclick: del }, "Delete")));
  }
  function load() {
    api("GET", path).then((l) => rows.replaceChildren(...l.map(row))).catch(() => {});
  }
  const pattern = new RegExp("^[A-Za-z0-9][A-Za-z0-9_.-]{0," + (kind.maxLen - 1) + "}$");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const n = input.value.trim();
    if (n && !pattern.test(n)) {
      setError("a " + kind.noun + " name is up to " + kind.maxLen +
        " letters, digits, '.', '_' or '-', starting with a letter or digit");
      return;
    }
    if (await start("POST", path, n ? { name: n } : undefined)) input.value = "";
  });
  return { el, load };
}
