// One job as a list item: its title, a progress bar, the phase and bytes
// while it runs, the end state and kvzd's error line after, and Cancel
// while it can still be cancelled. Shared by the guest page and the
// create wizard.
import { bytes, h } from "../format.js";

export const ACTIVE = new Set(["queued", "running"]);
const JOB_NAMES = { "snapshot-create": "Snapshot", "snapshot-restore": "Restore", migrate: "Migrate",
  "backup-create": "Backup", "backup-restore": "Restore backup", "vm-create": "Create" };

export function jobTitle(j) {
  const p = j.params || {};
  const what = p.snapshot || p.backup || p.to || (j.type === "vm-create" ? j.guest : "");
  return (JOB_NAMES[j.type] || j.type) + (what ? " " + what : "");
}

export function jobItem(j, onCancel) {
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
