// What the create wizard asks, step by step, as virt-manager's wizard does:
// name and kind; what to boot (a container's template; a VM's kernel +
// initrd + command line, a VM template, an imported disk image or install
// media: an ISO the firmware boots first, with a new empty disk);
// resources with the disk's size, format and allocation; network; summary.
// Each field says when it is shown and how the browser checks it; kvzd
// checks everything again (docs/api.md, POST /v1/guests), and its error
// line is put next to the field it names (errorField).
const SIZE = /^[0-9]+(\.[0-9]+)?[KMGT]?$/i;
const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;
const ct = (v) => v.kind !== "vm";
const vm = (v) => v.kind === "vm";
const fromKernel = (v) => vm(v) && v.source === "kernel";
const fromTemplate = (v) => vm(v) && v.source === "template";
const fromImport = (v) => vm(v) && v.source === "import";
const fromIso = (v) => vm(v) && v.source === "iso";
const diskChoices = (v) => fromKernel(v) || fromIso(v);
const ownSystem = (v) => fromTemplate(v) || fromImport(v);
const size = (example) => (v) => !v || SIZE.test(v) || "a size such as " + example;
const path = (v) => !v || v.startsWith("/") || "an absolute path";

export const STEPS = [
  { title: "Name", fields: [
    { id: "name", label: "Name", help: "letters, digits, _ . -; up to 63", required: true,
      check: (v) => /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(v) || "letters, digits, _ . - (up to 63), starting with a letter or digit" },
    { id: "kind", label: "Kind", options: [["ct", "Container"], ["vm", "Virtual machine"]] },
  ] },
  { title: "Boot", fields: [
    { id: "template", label: "Template", options: [["busybox", "busybox"], ["debian", "debian"]], when: ct },
    { id: "command", label: "Init command", help: "default /sbin/init; /bin/sh puts a shell on the console",
      when: ct, check: (v) => !v || v.startsWith("/") || "an absolute path, then its arguments" },
    { id: "source", label: "What to boot", when: vm, options: [["kernel", "a kernel, initrd and command line"],
      ["template", "a new system from a template"], ["import", "an existing disk image (import)"],
      ["iso", "install media (ISO)"]] },
    { id: "kernel", label: "Kernel", help: "absolute path in one of kvzd's image directories", when: fromKernel,
      required: true, check: path },
    { id: "initrd", label: "Initrd", help: "optional", when: fromKernel, check: path },
    { id: "cmdline", label: "Kernel command line", help: "e.g. console=ttyS0", when: fromKernel },
    { id: "vm_template", label: "Template", options: [["debian", "debian"]], when: fromTemplate },
    { id: "hostname", label: "Host name", help: "default the guest's name", when: fromTemplate },
    { id: "ssh_key", label: "root's SSH public keys", help: "optional; authorized_keys lines", when: fromTemplate,
      multiline: true },
    { id: "root_password", label: "root's password", help: "optional; stored hashed in the disk only",
      when: fromTemplate, type: "password" },
    { id: "import", label: "Disk image", help: "absolute path of a raw image in one of kvzd's image directories; it is copied",
      when: fromImport, required: true, check: path },
    { id: "cdrom", label: "ISO image", help: "absolute path of an ISO in one of kvzd's image directories; "
      + "the firmware boots it first, the installer writes the new disk", when: fromIso, required: true, check: path },
    { id: "boot", label: "Boot with", when: ownSystem,
      options: [["direct", "the kernel in its disk"], ["firmware", "firmware (BIOS)"]] },
  ] },
  { title: "Resources", fields: [
    { id: "memory_soft", label: "Memory soft limit", help: "e.g. 256M; empty: none", when: ct, check: size("256M") },
    { id: "memory_hard", label: "Memory hard limit", help: "e.g. 512M; empty: none", when: ct, check: size("512M") },
    { id: "vm_memory", label: "Memory", help: "default 256M; 512M for a template or an import; 1G for install media", when: vm,
      check: size("512M") },
    { id: "cpus", label: "CPUs", help: "a container: a share such as 0.5 (empty: no limit); a VM: whole vCPUs",
      check: (v) => !v || (Number(v) > 0 && Number(v) <= 1024) || "a number above 0" },
    { id: "disk", label: "Disk size", when: (v) => !fromImport(v), check: size("1G"),
      placeholder: (v) => (ct(v) ? "1G" : fromTemplate(v) ? "4G" : fromIso(v) ? "8G" : "none"),
      help: "empty: kvzd's default (a container's private area 1G, a template VM 4G, install media 8G, else no disk)" },
    { id: "disk_format", label: "Disk format", when: diskChoices,
      options: [["raw", "raw"], ["qcow2", "qcow2 (grows as used; snapshots of its own)"]] },
    { id: "disk_mode", label: "Disk allocation", when: diskChoices,
      options: [["sparse", "grows as used (sparse)"], ["fixed", "allocated up front (fixed, raw only)"]],
      check: (v, all) => v !== "fixed" || all.disk_format !== "qcow2" || "a qcow2 disk grows; fixed is raw only" },
  ] },
  { title: "Network", fields: [
    { id: "ip", label: "Address", help: "A.B.C.D/P; empty: none (a template VM: DHCP)", when: (v) => ct(v) || fromTemplate(v),
      check: (v) => !v || /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(v) || "A.B.C.D/PREFIX" },
    { id: "gw", label: "Gateway", help: "optional", when: (v) => ct(v) || fromTemplate(v),
      check: (v) => !v || IPV4.test(v) || "A.B.C.D" },
    { id: "bridge", label: "Bridge", help: "a container or template VM with an address: default kvzbr0; else empty for no NIC" },
  ] },
  { title: "Summary", fields: [] },
];

export const ALL = STEPS.flatMap((s) => s.fields);
export const shown = (f, values) => !f.when || f.when(values);
export const SECRETS = new Set(["ssh_key", "root_password"]);

// The starting values: each field's first option, else empty (kvzd's default).
export function initialValues() {
  const values = {};
  ALL.forEach((f) => (values[f.id] = f.options ? f.options[0][0] : ""));
  return values;
}

function vmRequest(v, body) {
  if (v.vm_memory) body.memory = v.vm_memory;
  if (v.bridge) body.bridge = v.bridge;
  if (v.source === "import") return Object.assign(body, { import: v.import, boot: v.boot });
  if (v.disk) body.disk = v.disk;
  if (v.source === "iso") {
    // The disk the system is installed on; the CD boots first (kvzd's default).
    return Object.assign(body, { cdrom: v.cdrom, disk: v.disk || "8G", disk_format: v.disk_format,
      disk_mode: v.disk_mode });
  }
  if (v.source === "template") {
    Object.assign(body, { template: v.vm_template, boot: v.boot });
    for (const k of ["hostname", "ssh_key", "root_password", "ip", "gw"]) if (v[k]) body[k] = v[k];
    return body;
  }
  body.kernel = v.kernel;
  if (v.initrd) body.initrd = v.initrd;
  if (v.cmdline) body.cmdline = v.cmdline;
  if (v.disk) Object.assign(body, { disk_format: v.disk_format, disk_mode: v.disk_mode });
  return body;
}

// The POST /v1/guests body for what was entered.
export function request(v) {
  const body = { type: v.kind, name: v.name };
  if (v.cpus) body.cpus = Number(v.cpus);
  if (v.kind === "vm") return vmRequest(v, body);
  if (v.disk) body.disk = v.disk;
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

// Which field a kvzd error line is about: the first of the candidates that
// the chosen kind and source show. More specific words come first
// ("hostname" before "name", "fixed" before "disk").
const ERROR_FIELDS = [
  [/import/i, ["import"]], [/cdrom|ISO/, ["cdrom"]], [/kernel/i, ["kernel"]], [/initrd/i, ["initrd"]], [/cmdline/i, ["cmdline"]],
  [/hostname/i, ["hostname"]], [/ssh_key/i, ["ssh_key"]], [/root_password/i, ["root_password"]],
  [/\bboot must/i, ["boot"]], [/name/i, ["name"]], [/template/i, ["template", "vm_template"]],
  [/command/i, ["command"]], [/memory/i, ["memory_hard", "vm_memory"]], [/cpus/i, ["cpus"]],
  [/disk_mode|fixed|preallocat/i, ["disk_mode"]], [/disk_format|qcow2/i, ["disk_format"]],
  [/disk|space/i, ["disk"]], [/gw|gateway/i, ["gw"]], [/bridge/i, ["bridge"]],
  [/\bip\b|network|address/i, ["ip"]],
];

export function errorField(message, values) {
  for (const [re, ids] of ERROR_FIELDS) {
    const f = re.test(message) && ALL.find((x) => ids.includes(x.id) && shown(x, values));
    if (f) return f;
  }
  return null;
}
