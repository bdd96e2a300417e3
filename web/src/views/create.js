// The create wizard for containers, in virt-manager's order: name,
// template, resources, network, summary; then create and start with
// progress. Fields are checked here and again by kvzd, whose error is shown
// next to the field it names.
import { api } from "../api.js";
import { h } from "../format.js";

const SIZE = /^[0-9]+(\.[0-9]+)?[KMGT]?$/i;
const STEPS = [
  { title: "Name", fields: [
    { id: "name", label: "Name", help: "letters, digits, _ . -; up to 63", required: true,
      check: (v) => /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(v) || "letters, digits, _ . - (up to 63), starting with a letter or digit" },
  ] },
  { title: "Template", fields: [
    { id: "template", label: "Template", options: ["busybox", "debian"] },
    { id: "command", label: "Init command", help: "default /sbin/init; /bin/sh puts a shell on the console",
      check: (v) => !v || v.startsWith("/") || "an absolute path, then its arguments" },
  ] },
  { title: "Resources", fields: [
    { id: "memory_soft", label: "Memory soft limit", help: "e.g. 256M; empty: none", check: (v) => !v || SIZE.test(v) || "a size such as 256M" },
    { id: "memory_hard", label: "Memory hard limit", help: "e.g. 512M; empty: none", check: (v) => !v || SIZE.test(v) || "a size such as 512M" },
    { id: "cpus", label: "CPUs", help: "a share such as 0.5; empty: no limit", check: (v) => !v || (Number(v) > 0 && Number(v) <= 1024) || "a number above 0" },
    { id: "disk", label: "Disk", help: "size of its private area (1G)", value: "1G", check: (v) => !v || SIZE.test(v) || "a size such as 1G" },
  ] },
  { title: "Network", fields: [
    { id: "ip", label: "Address", help: "A.B.C.D/P on the bridge; empty: no network", check: (v) => !v || /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(v) || "A.B.C.D/PREFIX" },
    { id: "gw", label: "Gateway", help: "optional", check: (v) => !v || /^\d+\.\d+\.\d+\.\d+$/.test(v) || "A.B.C.D" },
    { id: "bridge", label: "Bridge", help: "default kvzbr0" },
  ] },
  { title: "Summary", fields: [] },
];

// Which field a kvzd error message is about.
const ERROR_FIELDS = [
  [/name/i, "name"], [/template/i, "template"], [/command/i, "command"], [/memory/i, "memory_hard"], [/cpus/i, "cpus"],
  [/disk|space/i, "disk"], [/gw|gateway/i, "gw"], [/bridge/i, "bridge"], [/\bip\b|network|address/i, "ip"],
];

function request(values) {
  const body = { type: "ct", name: values.name, template: values.template || "busybox" };
  const { memory_soft: soft, memory_hard: hard } = values;
  if (soft && hard) body.memory = soft + ":" + hard;
  else if (soft || hard) body.memory = soft || hard;
  if (values.command) body.command = values.command.split(/\s+/);
  if (values.cpus) body.cpus = Number(values.cpus);
  if (values.disk) body.disk = values.disk;
  if (values.ip) {
    body.ip = values.ip;
    if (values.gw) body.gw = values.gw;
    body.bridge = values.bridge || "kvzbr0";
  }
  return body;
}

export function createWizard(main) {
  const values = {};
  STEPS.flatMap((s) => s.fields).forEach((f) => (values[f.id] = f.value || (f.options ? f.options[0] : "")));
  let step = 0;
  const errors = {};
  const progress = h("p", { id: "create-progress", class: "status", role: "status", "aria-live": "polite" });

  function field(f) {
    const input = f.options
      ? h("select", { id: "f-" + f.id, name: f.id }, f.options.map((o) => h("option", { value: o, selected: values[f.id] === o }, o)))
      : h("input", { id: "f-" + f.id, name: f.id, value: values[f.id], required: f.required, autocomplete: "off",
        "aria-describedby": "e-" + f.id + " h-" + f.id, "aria-invalid": errors[f.id] ? "true" : null });
    input.addEventListener("input", () => (values[f.id] = input.value));
    input.addEventListener("change", () => (values[f.id] = input.value));
    return h("div", { class: "field" }, h("label", { for: "f-" + f.id }, f.label), input,
      f.help ? h("small", { id: "h-" + f.id }, f.help) : null,
      h("p", { class: "error", id: "e-" + f.id, role: "alert" }, errors[f.id] || ""));
  }

  function validate(s) {
    let ok = true;
    for (const f of STEPS[s].fields) {
      const v = (values[f.id] || "").trim();
      values[f.id] = v;
      const r = f.required && !v ? "required" : f.check ? f.check(v) : true;
      errors[f.id] = r === true ? "" : r;
      if (r !== true) ok = false;
    }
    return ok;
  }

  function summary() {
    const body = request(values);
    return h("table", { class: "kv", id: "summary" }, h("tbody", {}, Object.entries(body)
      .map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, String(v))))));
  }

  async function submit() {
    progress.textContent = "Creating " + values.name + "…";
    let g;
    try {
      g = await api("POST", "/v1/guests", request(values));
    } catch (e) {
      progress.textContent = "";
      const hit = ERROR_FIELDS.find(([re]) => re.test(e.message));
      const id = hit ? hit[1] : null;
      if (id) {
        errors[id] = e.message;
        step = STEPS.findIndex((s) => s.fields.some((f) => f.id === id));
      } else {
        progress.textContent = e.message;
      }
      render();
      return;
    }
    progress.textContent = "Starting " + g.name + "…";
    try {
      await api("POST", "/v1/guests/" + encodeURIComponent(g.name) + "/start");
    } catch (e) {
      progress.textContent = "Created, but the start failed: " + e.message;
      return;
    }
    location.hash = "#/guest/" + encodeURIComponent(g.name);
  }

  function render() {
    const s = STEPS[step];
    const last = step === STEPS.length - 1;
    const form = h("form", { id: "wizard", novalidate: true },
      h("ol", { class: "steps", "aria-label": "steps" }, STEPS.map((x, i) =>
        h("li", { class: i === step ? "current" : i < step ? "done" : "", "aria-current": i === step ? "step" : null }, x.title))),
      h("h2", {}, s.title),
      last ? summary() : s.fields.map(field),
      h("div", { class: "actions" },
        step > 0 ? h("button", { type: "button", id: "back", onclick: () => { step--; render(); } }, "Back") : null,
        h("button", { type: "submit", id: last ? "create" : "next" }, last ? "Create and start" : "Next")),
      progress);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (last) {
        submit();
      } else if (validate(step)) {
        step++;
        render();
      } else {
        render();
      }
    });
    main.replaceChildren(h("h1", {}, "Create a container"), form);
    const first = form.querySelector("[aria-invalid=true]") || form.querySelector("input, select");
    (first || form.querySelector("button[type=submit]")).focus();
  }
  render();
  return () => {};
}
