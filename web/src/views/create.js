// The create wizard, in virt-manager's order: name and kind, what to boot,
// resources, network, summary; then create and start with progress.
// Fields are checked here and again by kvzd, whose error is shown next to
// the field it names.
import { api } from "../api.js";
import { h } from "../format.js";

const SIZE = /^[0-9]+(\.[0-9]+)?[KMGT]?$/i;
const ct = (v) => v.kind !== "vm";
const vm = (v) => v.kind === "vm";
const size = (example) => (v) => !v || SIZE.test(v) || "a size such as " + example;

const STEPS = [
  { title: "Name", fields: [
    { id: "name", label: "Name", help: "letters, digits, _ . -; up to 63", required: true,
      check: (v) => /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(v) || "letters, digits, _ . - (up to 63), starting with a letter or digit" },
    { id: "kind", label: "Kind", options: [["ct", "Container"], ["vm", "Virtual machine"]] },
  ] },
  { title: "Boot", fields: [
    { id: "template", label: "Template", options: [["busybox", "busybox"], ["debian", "debian"]], when: ct },
    { id: "command", label: "Init command", help: "default /sbin/init; /bin/sh puts a shell on the console",
      when: ct, check: (v) => !v || v.startsWith("/") || "an absolute path, then its arguments" },
    { id: "kernel", label: "Kernel", help: "absolute path in one of kvzd's image directories", when: vm,
      required: true, check: (v) => v.startsWith("/") || "an absolute path" },
    { id: "initrd", label: "Initrd", help: "optional", when: vm, check: (v) => !v || v.startsWith("/") || "an absolute path" },
    { id: "cmdline", label: "Kernel command line", help: "e.g. console=ttyS0", when: vm },
  ] },
  { title: "Resources", fields: [
    { id: "memory_soft", label: "Memory soft limit", help: "e.g. 256M; empty: none", when: ct, check: size("256M") },
    { id: "memory_hard", label: "Memory hard limit", help: "e.g. 512M; empty: none", when: ct, check: size("512M") },
    { id: "vm_memory", label: "Memory", help: "default 256M", when: vm, check: size("512M") },
    { id: "cpus", label: "CPUs", help: "a container: a share such as 0.5 (empty: no limit); a VM: whole vCPUs",
      check: (v) => !v || (Number(v) > 0 && Number(v) <= 1024) || "a number above 0" },
    { id: "disk", label: "Disk", help: "a container: its private area (1G); a VM: a raw image (empty: none)", check: size("1G") },
    { id: "disk_mode", label: "Disk allocation", when: vm,
      options: [["sparse", "grows as used (sparse)"], ["fixed", "allocated up front (fixed)"]] },
  ] },
  { title: "Network", fields: [
    { id: "ip", label: "Address", help: "A.B.C.D/P on the bridge; empty: no network", when: ct,
      check: (v) => !v || /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(v) || "A.B.C.D/PREFIX" },
    { id: "gw", label: "Gateway", help: "optional", when: ct, check: (v) => !v || /^\d+\.\d+\.\d+\.\d+$/.test(v) || "A.B.C.D" },
    { id: "bridge", label: "Bridge", help: "a container: default kvzbr0; a VM: empty for no NIC" },
  ] },
  { title: "Summary", fields: [] },
];

// Which field a kvzd error message is about: the first of the candidates
// that the chosen kind shows.
const ERROR_FIELDS = [
  [/kernel/i, ["kernel"]], [/initrd/i, ["initrd"]], [/cmdline/i, ["cmdline"]],
  [/name/i, ["name"]], [/template/i, ["template"]], [/command/i, ["command"]],
  [/memory/i, ["memory_hard", "vm_memory"]], [/cpus/i, ["cpus"]], [/disk_mode/i, ["disk_mode"]],
  [/disk|space/i, ["disk"]], [/gw|gateway/i, ["gw"]], [/bridge/i, ["bridge"]],
  [/\bip\b|network|address/i, ["ip"]],
];

const ALL = STEPS.flatMap((s) => s.fields);
const shown = (f, values) => !f.when || f.when(values);

function request(v) {
  const body = { type: v.kind, name: v.name };
  if (v.cpus) body.cpus = Number(v.cpus);
  if (v.disk) body.disk = v.disk;
  if (v.kind === "vm") {
    body.kernel = v.kernel;
    if (v.initrd) body.initrd = v.initrd;
    if (v.cmdline) body.cmdline = v.cmdline;
    if (v.vm_memory) body.memory = v.vm_memory;
    if (v.disk) body.disk_mode = v.disk_mode;
    if (v.bridge) body.bridge = v.bridge;
    return body;
  }
  body.template = v.template || "busybox";
  if (v.command) body.command = v.command.split(/\s+/);
  const { memory_soft: soft, memory_hard: hard } = v;
  if (soft && hard) body.memory = soft + ":" + hard;
  else if (soft || hard) body.memory = soft || hard;
  if (v.ip) {
    body.ip = v.ip;
    if (v.gw) body.gw = v.gw;
    body.bridge = v.bridge || "kvzbr0";
  }
  return body;
}

export function createWizard(main) {
  const values = {};
  ALL.forEach((f) => (values[f.id] = f.value || (f.options ? f.options[0][0] : "")));
  values.disk = "1G";
  let step = 0;
  const errors = {};
  const progress = h("p", { id: "create-progress", class: "status", role: "status", "aria-live": "polite" });

  function field(f) {
    const input = f.options
      ? h("select", { id: "f-" + f.id, name: f.id },
        f.options.map(([v, label]) => h("option", { value: v, selected: values[f.id] === v }, label)))
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
    for (const f of STEPS[s].fields.filter((x) => shown(x, values))) {
      const v = (values[f.id] || "").trim();
      values[f.id] = v;
      const r = f.required && !v ? "required" : f.check ? f.check(v) : true;
      errors[f.id] = r === true ? "" : r;
      if (r !== true) ok = false;
    }
    return ok;
  }

  function summary() {
    return h("table", { class: "kv", id: "summary" }, h("tbody", {}, Object.entries(request(values))
      .map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, String(v))))));
  }

  function showError(message) {
    const hit = ERROR_FIELDS.find(([re]) => re.test(message));
    const f = hit && ALL.find((x) => hit[1].includes(x.id) && shown(x, values));
    if (!f) {
      progress.textContent = message;
      return;
    }
    errors[f.id] = message;
    step = STEPS.findIndex((s) => s.fields.includes(f));
    render();
  }

  async function submit() {
    progress.textContent = "Creating " + values.name + "…";
    let g;
    try {
      g = await api("POST", "/v1/guests", request(values));
    } catch (e) {
      progress.textContent = "";
      showError(e.message);
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
      last ? summary() : s.fields.filter((f) => shown(f, values)).map(field),
      h("div", { class: "actions" },
        step > 0 ? h("button", { type: "button", id: "back", onclick: () => { step--; render(); } }, "Back") : null,
        h("button", { type: "submit", id: last ? "create" : "next" }, last ? "Create and start" : "Next")),
      progress);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (last) {
        submit();
        return;
      }
      if (validate(step)) step++;
      render();
    });
    main.replaceChildren(h("h1", {}, "Create a guest"), form);
    const first = form.querySelector("[aria-invalid=true]") || form.querySelector("input, select");
    (first || form.querySelector("button[type=submit]")).focus();
  }
  render();
  return () => {};
}
