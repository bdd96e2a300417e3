// A container's backups in the web UI, in headless Chromium (playwright-
// core), against a kvzd whose kvz-ct is the stand-in (test_browser.py):
// a bad name refused in the browser, back up and see it listed with the
// job completed, restore it after confirming, cancel a slow second backup
// half-way (the stand-in is slowed by a marker file in the container's
// directory), delete the backup. Any failure throws: exit status 1 with
// the step that failed.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { check, env, launch, openGuest, steps } from "./e2e_common.mjs";

const { KVZ_SHOTS, KVZ_CT_NAME, KVZ_CT_DIR } = env;
const st = steps("e2e-backups");
const log = st.log;

const browser = await launch();
let page = null;
try {
  log("log in and open the container's page");
  const opened = await openGuest(browser, KVZ_CT_NAME);
  page = opened.page;
  const { errors, shot } = opened;
  await page.waitForSelector("#backup-form", { state: "visible" });
  check(!(await page.isVisible("#snap-form")), "a container shows the snapshot form");

  log("a bad backup name is refused in the browser");
  await page.fill("#backup-name", "x".repeat(41));
  await page.click("#backup-take");
  await page.waitForFunction(() => /up to 40 letters/.test(document.getElementById("jobs-error").textContent));

  log("back up and see it listed");
  await page.fill("#backup-name", "b1");
  await page.click("#backup-take");
  await page.waitForFunction(() => [...document.querySelectorAll("#guest-jobs li.job-completed strong")]
    .some((e) => e.textContent === "Backup b1"));
  await page.waitForSelector("#backup-b1");
  await shot("guest-backups");

  log("restore it after confirming");
  await page.click("#backup-b1 button:has-text('Restore')");
  await page.waitForSelector("#confirm[open]");
  await page.click("#confirm-ok");
  await page.waitForFunction(() => [...document.querySelectorAll("#guest-jobs li.job-completed strong")]
    .some((e) => e.textContent === "Restore backup b1"));
  await page.waitForFunction(() => document.getElementById("guest-state")?.textContent === "running");

  log("cancel a slow second backup half-way");
  writeFileSync(join(KVZ_CT_DIR, "fake-backup-slow"), "");
  await page.fill("#backup-name", "b2");
  await page.click("#backup-take");
  await page.waitForSelector("#guest-jobs li.job-running .job-cancel");
  await page.waitForFunction(() => /writing/.test(document.querySelector("#guest-jobs li.job-running .job-detail")?.textContent || ""));
  await page.click("#guest-jobs li.job-running .job-cancel");
  await page.waitForSelector("#guest-jobs li.job-cancelled");
  check(!(await page.$("#backup-b2")), "a cancelled backup is listed");

  log("delete the backup after confirming");
  await page.click("#backup-b1 button:has-text('Delete')");
  await page.waitForSelector("#confirm[open]");
  await page.click("#confirm-ok");
  await page.waitForFunction(() => !document.getElementById("backup-b1"));
  check(errors.length === 0, "page errors: " + errors.join("; "));
  console.log("e2e-backups: all steps passed");
} catch (e) {
  console.log("e2e-backups: FAILED at step '" + st.current + "': " + e.message);
  if (page) await page.screenshot({ path: join(KVZ_SHOTS, "backups-failure.png"), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
