// The long operations of one guest on its page: snapshots (take, restore,
// delete) and migration to another node for a VM, and every job of the
// guest with a progress bar and Cancel. Jobs come live from the event
// stream ("jobs" messages, kvzd sends them as progress is stored); the
// snapshot list is read again when a snapshot job of this guest ends.
import { api } from "../api.js";
import { bytes, h } from "../format.js";
import { live, subscribe } from "../live.js";

const ACTIVE = new Set(["queued", "running"]);
const JOB_NAMES = { "snapshot-create": "Snapshot", "snapshot-restore": "Restore", migrate: "Migrate" };

function jobTitle(j) {
  const p = j.params || {};
  const what = p.snapshot || p.to || "";
  return (JOB_NAMES[j.type] || j.type) + (what ? " " + what : "");
}

function jobItem(j, onCancel) {
  const active = ACTIVE.has(j.state);
  const bar = h("progress", { id: "job-bar-" + j.id, max: j.total || 1, value: j.total ? j.done : undefined,
    "aria-label": jobTitle(j) + " progress" });
  if (!active) bar.value = bar.max;
  const detail = active
    ? (j.phase || j.state) + (j.total ? " · " + bytes(j.done) + " of " + bytes(j.total) : "") +
      (j.rate ? " · " + bytes(j.rate) + "/s" : "")
    : j.state + (j.error ? ": " + j.error : "");
  return h("li", { id: "job-" + j.id, class: "job job-" + j.state },
    h("strong", {}, jobTitle(j)), " ", bar, " ", h("span", { class: "job-detail" }, detail),
    active && h("button", { type: "button", class: "job-cancel", onclick: () => onCancel(j) }, "Cancel"));
}

export function jobsPanel(name, confirmDialog) {
  const path = "/v1/guests/" + encodeURIComponent(name);
  const error = h("p", { id: "jobs-error", class: "error", role: "alert" });
  const jobList = h("ol", { id: "guest-jobs", class: "jobs" });
  const snapRows = h("tbody", { id: "snapshots" });
  const snapName = h("input", { id: "snap-name", name: "snapshot", placeholder: "name (optional)",
    autocomplete: "off", size: 16 });
  const snapForm = h("form", { id: "snap-form", class: "inline" },
    h("label", { for: "snap-name" }, "Snapshot"), snapName, h("button", { type: "submit", id: "snap-take" }, "Take"));
  const nodeSelect = h("select", { id: "mig-node", "aria-label": "target node" });
  const offline = h("input", { type: "checkbox", id: "mig-offline" });
  const migForm = h("form", { id: "mig-form", class: "inline", hidden: true },
    h("label", { for: "mig-node" }, "Migrate to"), nodeSelect,
    h("label", {}, offline, " offline"), h("button", { type: "submit", id: "mig-go" }, "Migrate"));
  const vmOnly = h("div", { hidden: true },
    h("table", { class: "kv snapshots" }, h("thead", {}, h("tr", {}, h("th", {}, "Snapshot"), h("th", {}, "Taken"),
      h("th", {}, "Size"), h("th", {}, "VM was"), h("th", {}, ""))), snapRows),
    snapForm, migForm);
  const el = h("section", { class: "panel", id: "jobs-panel" }, h("h2", {}, "Snapshots, migration and jobs"),
    vmOnly, error, jobList);

  const fail = (e) => (error.textContent = e.message);
  const start = (method, url, body) => {
    error.textContent = "";
    return api(method, url, body).catch(fail);
  };

  function snapRow(s) {
    const restore = async () => {
      if (!(await confirmDialog("Return " + name + " to snapshot " + s.name + "? What it did since is lost.")))
        return;
      start("POST", path + "/snapshots/" + encodeURIComponent(s.name) + "/restore");
    };
    const del = async () => {
      if (!(await confirmDialog("Delete snapshot " + s.name + "?"))) return;
      await start("DELETE", path + "/snapshots/" + encodeURIComponent(s.name));
      loadSnapshots();
    };
    return h("tr", { id: "snap-" + s.name }, h("td", {}, s.name), h("td", {}, new Date(s.created_ms).toLocaleString()),
      h("td", {}, bytes(s.size)), h("td", {}, s.running ? "running" : "stopped"),
      h("td", {}, h("button", { type: "button", onclick: restore }, "Restore"), " ",
        h("button", { type: "button", class: "danger", onclick: del }, "Delete")));
  }
  function loadSnapshots() {
    api("GET", path + "/snapshots").then((l) => snapRows.replaceChildren(...l.map(snapRow))).catch(() => {});
  }
  function loadNodes() {
    api("GET", "/v1/nodes").then((nodes) => {
      nodeSelect.replaceChildren(...nodes.map((n) => h("option", { value: n.name }, n.name)));
      migForm.hidden = nodes.length === 0;
    }).catch(() => {});
  }

  snapForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const n = snapName.value.trim();
    if (n && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(n)) {
      error.textContent = "a snapshot name is up to 63 letters, digits, '.', '_' or '-', starting with a letter or digit";
      return;
    }
    if (await start("POST", path + "/snapshots", n ? { name: n } : undefined)) snapName.value = "";
  });
  migForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    start("POST", path + "/migrate", { to: nodeSelect.value, offline: offline.checked });
  });
  const cancel = (j) => start("POST", "/v1/jobs/" + j.id + "/cancel");

  let ended = null;   // ids of the jobs seen ended; null before the first list
  function showJobs(all) {
    const mine = (all || []).filter((j) => j.guest === name).reverse();
    jobList.replaceChildren(...mine.map((j) => jobItem(j, cancel)));
    // A snapshot job that ended since the last list changed the snapshots.
    const done = mine.filter((j) => !ACTIVE.has(j.state));
    if (ended && done.some((j) => !ended.has(j.id) && j.type.startsWith("snapshot"))) loadSnapshots();
    if (all) ended = new Set(done.map((j) => j.id));
  }

  const unsub = subscribe((kind, data) => kind === "jobs" && showJobs(data));
  showJobs(live.jobs);
  return {
    el,
    // The guest record changed (type known once it loaded).
    update(guest) {
      const vm = guest && guest.type === "vm";
      if (vm && vmOnly.hidden) {
        loadSnapshots();
        loadNodes();
      }
      vmOnly.hidden = !vm;
    },
    destroy: unsub,
  };
}
