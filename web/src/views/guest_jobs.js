// The long operations of one guest on its page: snapshots (take, restore,
// delete) and migration to another node for a VM, backups for a container
// (guest_items.js), and every job of the guest with a progress bar and
// Cancel (job_item.js). Jobs come live from the event stream ("jobs"
// messages, kvzd sends them as progress is stored); the snapshot or backup
// list is read again when such a job of this guest ends.
import { api } from "../api.js";
import { h } from "../format.js";
import { live, subscribe } from "../live.js";
import { BACKUPS, SNAPSHOTS, itemsSection } from "./guest_items.js";
import { ACTIVE, jobItem } from "./job_item.js";

export function jobsPanel(name, confirmDialog) {
  const path = "/v1/guests/" + encodeURIComponent(name);
  const error = h("p", { id: "jobs-error", class: "error", role: "alert" });
  const jobList = h("ol", { id: "guest-jobs", class: "jobs" });
  const nodeSelect = h("select", { id: "mig-node", "aria-label": "target node" });
  const offline = h("input", { type: "checkbox", id: "mig-offline" });
  const migForm = h("form", { id: "mig-form", class: "inline", hidden: true },
    h("label", { for: "mig-node" }, "Migrate to"), nodeSelect,
    h("label", {}, offline, " offline"), h("button", { type: "submit", id: "mig-go" }, "Migrate"));

  const fail = (e) => (error.textContent = e.message);
  const start = (method, url, body) => {
    error.textContent = "";
    return api(method, url, body).catch(fail);
  };
  const setError = (text) => (error.textContent = text);
  const snaps = itemsSection(SNAPSHOTS, name, confirmDialog, start, setError);
  const backups = itemsSection(BACKUPS, name, confirmDialog, start, setError);
  const vmOnly = h("div", { hidden: true }, snaps.el, migForm);
  const ctOnly = h("div", { hidden: true }, backups.el);
  const el = h("section", { class: "panel", id: "jobs-panel" }, h("h2", {}, "Snapshots, backups, migration and jobs"),
    vmOnly, ctOnly, error, jobList);

  function loadNodes() {
    api("GET", "/v1/nodes").then((nodes) => {
      nodeSelect.replaceChildren(...nodes.map((n) => h("option", { value: n.name }, n.name)));
      migForm.hidden = nodes.length === 0;
    }).catch(() => {});
  }

  migForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    start("POST", path + "/migrate", { to: nodeSelect.value, offline: offline.checked });
  });
  const cancel = (j) => start("POST", "/v1/jobs/" + j.id + "/cancel");

  let ended = null;   // ids of the jobs seen ended; null before the first list
  function showJobs(all) {
    const mine = (all || []).filter((j) => j.guest === name).reverse();
    jobList.replaceChildren(...mine.map((j) => jobItem(j, cancel)));
    // A snapshot or backup job that ended since the last list changed
    // that list.
    const done = mine.filter((j) => !ACTIVE.has(j.state));
    const fresh = ended ? done.filter((j) => !ended.has(j.id)) : [];
    if (fresh.some((j) => j.type.startsWith("snapshot"))) snaps.load();
    if (fresh.some((j) => j.type.startsWith("backup"))) backups.load();
    if (all) ended = new Set(done.map((j) => j.id));
  }

  const unsub = subscribe((kind, data) => kind === "jobs" && showJobs(data));
  showJobs(live.jobs);
  return {
    el,
    // The guest record changed (type known once it loaded).
    update(guest) {
      const vm = guest && guest.type === "vm", ct = guest && guest.type === "ct";
      if (vm && vmOnly.hidden) {
        snaps.load();
        loadNodes();
      }
      if (ct && ctOnly.hidden) backups.load();
      vmOnly.hidden = !vm;
      ctOnly.hidden = !ct;
    },
    destroy: unsub,
  };
}
