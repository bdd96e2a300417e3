// The create wizard, in virt-manager's order (create_fields.js): name and
// kind, what to boot, resources, network, summary; then create and start
// with progress. A VM from a template or an imported image is made by a
// kvzd job (202 with the job): its progress bar follows the event stream's
// "jobs" messages until it ends, then the VM is started. Fields are checked
// here and again by kvzd, whose error is shown next to the field it names;
// a failed job's error stays under its bar.
import { api } from "../api.js";
import { h } from "../format.js";
import { live, subscribe } from "../live.js";
import { ALL, SECRETS, STEPS, errorField, initialValues, request, shown } from "./create_fields.js";
import { ACTIVE, jobItem } from "./job_item.js";

// Resolves with the job once it has ended, calling show(job) at each change
// the stream reports. The one GET covers an end that came before the
// subscription; nothing polls.
function followJob(job, show) {
  let unsub = () => {};
  const done = new Promise((resolve) => {
    const seen = (j) => {
      if (!j || j.id !== job.id) return;
      show(j);
      if (!ACTIVE.has(j.state)) {
        unsub();
        resolve(j);
      }
    };
    unsub = subscribe((kind, data) => kind === "jobs" && seen(data.find((j) => j.id === job.id)));
    seen(job);
    seen((live.jobs || []).find((j) => j.id === job.id));
    api("GET", "/v1/jobs/" + job.id).then(seen).catch(() => {});
  });
  return { done, stop: () => unsub() };
}

export function createWizard(main) {
  const values = initialValues();
  let step = 0;
  let busy = false;
  let following = null;
  const errors = {};
  const status = h("p", { id: "create-status", class: "status" });
  const jobList = h("ol", { id: "create-job", class: "jobs" });
  const failure = h("p", { id: "create-error", class: "error", role: "alert" });
  const progress = h("div", { id: "create-progress", role: "status", "aria-live": "polite" }, status, jobList, failure);

  function input(f) {
    const attrs = { id: "f-" + f.id, name: f.id, required: f.required,
      autocomplete: f.type === "password" ? "new-password" : "off",
      "aria-describedby": "e-" + f.id + " h-" + f.id, "aria-invalid": errors[f.id] ? "true" : null };
    if (f.options)
      return h("select", attrs, f.options.map(([v, label]) => h("option", { value: v, selected: values[f.id] === v }, label)));
    if (f.multiline) {
      const t = h("textarea", { ...attrs, rows: 3 });
      t.value = values[f.id];
      return t;
    }
    return h("input", { ...attrs, type: f.type || "text", value: values[f.id],
      placeholder: f.placeholder && f.placeholder(values) });
  }

  function field(f) {
    const el = input(f);
    el.addEventListener("input", () => (values[f.id] = el.value));
    // A choice may show or hide other fields of the step.
    el.addEventListener("change", () => {
      values[f.id] = el.value;
      if (f.options) render(el.id);
    });
    return h("div", { class: "field" }, h("label", { for: "f-" + f.id }, f.label), el,
      f.help ? h("small", { id: "h-" + f.id }, f.help) : null,
      h("p", { class: "error", id: "e-" + f.id, role: "alert" }, errors[f.id] || ""));
  }

  function validate(s) {
    let ok = true;
    for (const f of STEPS[s].fields.filter((x) => shown(x, values))) {
      // A password is taken as typed; other fields without the blanks around.
      const raw = values[f.id] || "";
      const v = (values[f.id] = f.type === "password" ? raw : raw.trim());
      const r = f.required && !v ? "required" : f.check ? f.check(v, values) : true;
      errors[f.id] = r === true ? "" : r;
      if (r !== true) ok = false;
    }
    return ok;
  }

  function summary() {
    return h("table", { class: "kv", id: "summary" }, h("tbody", {}, Object.entries(request(values))
      .map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, SECRETS.has(k) ? "(given)" : String(v))))));
  }

  function showError(message) {
    const f = errorField(message, values);
    if (!f) {
      failure.textContent = message;
      return;
    }
    errors[f.id] = message;
    step = STEPS.findIndex((s) => s.fields.includes(f));
    render();
  }

  // The vm-create job until it ends: true when it completed.
  async function runJob(job) {
    status.textContent = "Making the disk of " + job.guest + "…";
    following = followJob(job, (j) => jobList.replaceChildren(jobItem(j, cancel)));
    const end = await following.done;
    following = null;
    if (end.state === "completed") return true;
    status.textContent = "";
    // kvzd's error line is under the bar (jobItem).
    failure.textContent = (end.state === "cancelled" ? "Cancelled" : "Not created") +
      "; nothing was kept. Back changes a field; Create and start tries again.";
    return false;
  }

  const cancel = (j) => api("POST", "/v1/jobs/" + j.id + "/cancel").catch((e) => (failure.textContent = e.message));

  async function create() {
    jobList.replaceChildren();
    failure.textContent = "";
    status.textContent = "Creating " + values.name + "…";
    let r;
    try {
      r = await api("POST", "/v1/guests", request(values));
    } catch (e) {
      status.textContent = "";
      showError(e.message);
      return;
    }
    // 202: a job makes the VM's disk; 201: the guest itself.
    const name = r.type === "vm-create" ? r.guest : r.name;
    if (r.type === "vm-create" && !(await runJob(r))) return;
    status.textContent = "Starting " + name + "…";
    try {
      await api("POST", "/v1/guests/" + encodeURIComponent(name) + "/start");
    } catch (e) {
      status.textContent = "";
      failure.textContent = "Created, but the start failed: " + e.message;
      return;
    }
    location.hash = "#/guest/" + encodeURIComponent(name);
  }

  async function submit() {
    busy = true;
    render();
    try {
      await create();
    } finally {
      busy = false;
      if (document.getElementById("wizard")) render();
    }
  }

  function render(focusId) {
    const s = STEPS[step];
    const last = step === STEPS.length - 1;
    const form = h("form", { id: "wizard", novalidate: true, "aria-busy": busy ? "true" : null },
      h("ol", { class: "steps", "aria-label": "steps" }, STEPS.map((x, i) =>
        h("li", { class: i === step ? "current" : i < step ? "done" : "", "aria-current": i === step ? "step" : null }, x.title))),
      h("h2", {}, s.title),
      last ? summary() : s.fields.filter((f) => shown(f, values)).map(field),
      h("div", { class: "actions" },
        step > 0 ? h("button", { type: "button", id: "back", disabled: busy, onclick: () => { step--; render(); } }, "Back") : null,
        h("button", { type: "submit", id: last ? "create" : "next", disabled: busy }, last ? "Create and start" : "Next")),
      progress);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (busy) return;
      if (last) {
        submit();
        return;
      }
      if (validate(step)) step++;
      render();
    });
    main.replaceChildren(h("h1", {}, "Create a guest"), form);
    const first = (focusId && document.getElementById(focusId)) || form.querySelector("[aria-invalid=true]") ||
      form.querySelector("input, select, textarea");
    (first || form.querySelector("button[type=submit]")).focus();
  }
  render();
  return () => following && following.stop();
}
