// A VM's long operations in the web UI, in headless Chromium (playwright-
// core), against a kvzd whose kvz-vmm is the stand-in (test_browser.py):
// take a snapshot and watch its progress bar move from the event stream,
// see it listed, restore it after confirming, cancel a second snapshot
// half-way, a bad name refused in the browser, delete the snapshot.
// Any failure throws: exit status 1 with the step that failed.
import { join } from "node:path";
import { check, env, launch, openGuest, steps } from "./e2e_common.mjs";

const { KVZ_SHOTS, KVZ_VM } = env;
const st = steps("e2e-jobs");
const log = st.log;

const browser = await launch();
let page = null;
try {
  log("log in and open the VM's page");
  const opened = await openGuest(browser, KVZ_VM);
  page = opened.page;
  const { errors, shot } = opened;
  await page.waitForSelector("#snap-form", { state: "visible" });

  log("a bad snapshot name is refused in the browser");
  await page.fill("#snap-name", ".hidden");
  await page.click("#snap-take");
  await page.waitForFunction(() => /starting with a letter or digit/.test(document.getElementById("jobs-error").textContent));

  log("take a snapshot and watch its progress bar move without a reload");
  await page.fill("#snap-name", "s1");
  await page.click("#snap-take");
  const bar = "#guest-jobs li.job-running progress";
  await page.waitForSelector(bar);
  const seen = new Set();
  for (let i = 0; i < 60; i++) {
    const v = await page.evaluate((s) => {
      const p = document.querySelector(s);
      return p ? p.value + "/" + p.max + " " + p.parentElement.querySelector(".job-detail").textContent : null;
    }, bar);
    if (v === null) break;
    seen.add(v);
    await page.waitForTimeout(100);
  }
  check(seen.size >= 2, "the progress bar never moved: " + [...seen].join(" | "));
  check([...seen].some((v) => /saving|copying/.test(v)), "no phase shown: " + [...seen].join(" | "));
  await page.waitForSelector("#guest-jobs li.job-completed");
  await page.waitForSelector("#snap-s1");
  await shot("guest-snapshots");

  log("restore it after confirming");
  await page.click("#snap-s1 button:has-text('Restore')");
  await page.waitForSelector("#confirm[open]");
  await page.click("#confirm-ok");
  await page.waitForFunction(() => [...document.querySelectorAll("#guest-jobs li.job-completed strong")]
    .some((e) => e.textContent === "Restore s1"));
  await page.waitForFunction(() => document.getElementById("guest-state")?.textContent === "running");

  log("cancel a second snapshot half-way");
  await page.fill("#snap-name", "s2");
  await page.click("#snap-take");
  await page.waitForSelector("#guest-jobs li.job-running .job-cancel");
  await page.click("#guest-jobs li.job-running .job-cancel");
  await page.waitForSelector("#guest-jobs li.job-cancelled");
  check(!(await page.$("#snap-s2")), "a cancelled snapshot is listed");
  await shot("guest-jobs-cancelled");

  log("delete the snapshot after confirming");
  await page.click("#snap-s1 button:has-text('Delete')");
  await page.waitForSelector("#confirm[open]");
  await page.click("#confirm-ok");
  await page.waitForFunction(() => !document.getElementById("snap-s1"));
  check(errors.length === 0, "page errors: " + errors.join("; "));
  console.log("e2e-jobs: all steps passed");
} catch (e) {
  console.log("e2e-jobs: FAILED at step '" + st.current + "': " + e.message);
  if (page) await page.screenshot({ path: join(KVZ_SHOTS, "jobs-failure.png"), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
