// A VM's disks on its page (read-only), in headless Chromium against a
// kvzd with the stand-in kvz-vmm (test_browser.py): the list in kvz-vmm's
// order (vda, vdb), with sizes and formats, and each one's usage and I/O,
// in the usage line and on a graph of its own.
import { check, env, openGuest, runSteps } from "./e2e_common.mjs";

await runSteps("e2e-disks", async (run) => {
  run.log("open the VM's page and read its disks");
  const { page, errors, shot } = await openGuest(run.browser, env.KVZ_VM);
  run.page = page;
  await page.waitForFunction(() => document.getElementById("cfg-disks")?.textContent ===
    "vda 16 MiB raw, vdb 8.0 MiB qcow2");
  run.log("read each disk's usage (the stand-in's blockstats: vdN read N+1 MiB, wrote 3x)");
  await page.waitForFunction(() => /\(vda .* used, 1\.0 MiB read, 3\.0 MiB written; vdb .* used, 2\.0 MiB read, 6\.0 MiB written\)/
    .test(document.getElementById("usage").textContent));
  run.log("a graph of each disk: its lines named by device, read from kvzd's series");
  await page.waitForFunction(() => {
    const legend = document.querySelector("#disk-graph .u-legend")?.textContent || "";
    return ["vda used", "vda read", "vda written", "vdb used", "vdb read", "vdb written"]
      .every((l) => legend.includes(l)) && document.querySelectorAll("main .uplot canvas").length === 3;
  });
  await shot("guest-disks");
  check(errors.length === 0, "page errors: " + errors.join("; "));
});
