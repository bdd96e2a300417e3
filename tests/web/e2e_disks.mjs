// A VM's disks on its page (read-only), in headless Chromium against a
// kvzd with the stand-in kvz-vmm (test_browser.py): the list in kvz-vmm's
// order (vda, vdb), with sizes and formats.
import { check, env, openGuest, runSteps } from "./e2e_common.mjs";

await runSteps("e2e-disks", async (run) => {
  run.log("open the VM's page and read its disks");
  const { page, errors, shot } = await openGuest(run.browser, env.KVZ_VM);
  run.page = page;
  await page.waitForFunction(() => document.getElementById("cfg-disks")?.textContent ===
    "vda 16 MiB raw, vdb 8.0 MiB qcow2");
  await shot("guest-disks");
  check(errors.length === 0, "page errors: " + errors.join("; "));
});
