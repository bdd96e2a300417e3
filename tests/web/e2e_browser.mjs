// The web UI end to end in headless Chromium (playwright-core), against a
// kvzd started by test_browser.py: log in, a wizard field kvzd refuses,
// create and start a busybox container, see it live on the dashboard,
// resize its memory, run a command in its console, stop and destroy it, requests without the session or
// the CSRF token refused, log out. Screenshots of each page go to SHOTS.
// Any failure throws: exit status 1 with the step that failed.
import { join } from "node:path";
import { check, env, launch, steps } from "./e2e_common.mjs";

const { KVZ_UI, KVZ_TOKEN, KVZ_SHOTS } = env;
const T = 30000;
const st = steps("e2e");
const log = st.log;

const browser = await launch();
const urls = [];
let page = null;
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  page.setDefaultTimeout(T);
  page.on("request", (r) => urls.push(r.url()));
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  const shot = (name) => page.screenshot({ path: join(KVZ_SHOTS, name + ".png"), fullPage: true });

  log("a logged-out browser is sent to the login page");
  await page.goto(KVZ_UI + "/");
  check(page.url() === KVZ_UI + "/ui/login", "not redirected to the login page: " + page.url());
  await shot("login");

  log("a wrong token is refused on the page");
  await page.fill("#token", "not-the-token-0123456789");
  await page.press("#token", "Enter");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("wrong token"));

  log("log in with the keyboard");
  await page.fill("#token", KVZ_TOKEN);
  await page.press("#token", "Enter");
  await page.waitForURL(KVZ_UI + "/");
  await page.waitForSelector("#guests");
  await page.waitForFunction(() => document.getElementById("live").textContent === "live");
  const cookies = await ctx.cookies();
  const sc = cookies.find((c) => c.name === "kvz_session");
  check(sc && sc.httpOnly && sc.secure && sc.sameSite === "Strict", "cookie flags: " + JSON.stringify(sc));
  await shot("dashboard-empty");

  log("the wizard for a VM shows kvzd's refusal of a kernel outside the image directories");
  await page.goto(KVZ_UI + "/#/create");
  await page.fill("#f-name", "vm1");
  await page.selectOption("#f-kind", "vm");
  await page.click("#next");
  await page.fill("#f-kernel", "/etc/shadow");
  await page.click("#next");
  await page.fill("#f-disk", "");
  await page.click("#next");
  await page.click("#next");
  await page.waitForSelector("#summary");
  await page.click("#create");
  await page.waitForFunction(() => /not a readable file in the image directories/.test(
    document.getElementById("e-kernel")?.textContent || ""));
  await shot("create-vm-error");
  await page.goto(KVZ_UI + "/#/");

  log("the wizard shows kvzd's error next to the field");
  await page.goto(KVZ_UI + "/#/create");
  await page.fill("#f-name", "web1");
  await page.press("#f-name", "Enter");
  await page.selectOption("#f-template", "busybox");
  await page.fill("#f-command", "/bin/sh"); // a shell on the console
  await page.click("#next");
  await page.fill("#f-memory_soft", "32M");
  await page.fill("#f-memory_hard", "64M");
  await page.fill("#f-cpus", "0.5");
  await page.fill("#f-disk", "900T");
  await page.click("#next");
  await page.click("#next"); // network: none
  await page.waitForSelector("#summary");
  await shot("create-summary");
  await page.click("#create");
  await page.waitForFunction(() => /not enough space/.test(document.getElementById("e-disk")?.textContent || ""));
  check(await page.getAttribute("#f-disk", "aria-invalid") === "true", "disk field not marked invalid");
  await shot("create-error");

  log("the browser checks fields before kvzd does");
  await page.fill("#f-disk", "lots");
  await page.click("#next");
  await page.waitForFunction(() => /a size such as/.test(document.getElementById("e-disk")?.textContent || ""));

  log("create and start a busybox container through the wizard");
  await page.fill("#f-disk", "256M");
  await page.click("#next");
  await page.click("#next");
  await page.click("#create");
  await page.waitForURL(KVZ_UI + "/#/guest/web1", { timeout: 60000 });
  await page.waitForFunction(() => document.getElementById("guest-state")?.textContent === "running");

  log("the dashboard shows it running, with figures that change without a reload");
  let loads = 0;
  page.on("load", () => loads++);
  await page.click("nav a[href='#/']");
  const rowSel = "#guests tr[data-name='web1']";
  await page.waitForSelector(rowSel);
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes("running"), rowSel);
  await page.waitForFunction((s) => / \/ 64 MiB/.test(document.querySelector(s + " .mem")?.textContent || ""), rowSel);
  const figures = () => page.evaluate((s) => document.querySelector(".cards").textContent +
    document.querySelector(s).textContent, rowSel);
  const before = await figures();
  let after = before;
  for (let i = 0; i < 60 && after === before; i++) {
    await page.waitForTimeout(500);
    after = await figures();
  }
  check(after !== before, "no figure changed in 30 s: " + before);
  check(loads === 0, "the page reloaded");
  await shot("dashboard");

  log("resize its memory live and see the new limit");
  await page.click(rowSel + " a");
  await page.waitForSelector("#mem-form");
  await page.fill("#mem-size", "48M:96M");
  await page.press("#mem-size", "Enter");
  await page.waitForFunction(() => document.getElementById("cfg-memory_hard")?.textContent === "96 MiB");
  await page.waitForFunction(() => /of 96 MiB/.test(document.getElementById("usage").textContent));
  await page.fill("#res-cpus", "1");
  await page.fill("#res-pids", "300");
  await page.press("#res-pids", "Enter");
  await page.waitForFunction(() => document.getElementById("cfg-pids")?.textContent === "300" &&
    document.getElementById("cfg-cpus")?.textContent === "1");
  await page.fill("#res-disk", "64M"); // smaller than the disk: kvzd says why, next to the form
  await page.press("#res-disk", "Enter");
  await page.waitForFunction(() => document.getElementById("res-error").textContent !== "");
  await page.fill("#mem-size", "1M:2M:3M");
  await page.press("#mem-size", "Enter");
  await page.waitForFunction(() => document.getElementById("mem-error").textContent !== "");
  await page.waitForSelector("#guest-events li");
  // Two uPlot graphs (CPU and memory; disk and network), drawn from kvzd's series.
  await page.waitForFunction(() => document.querySelectorAll("main .uplot canvas").length === 2);
  await shot("guest");

  log("open its console and run a command");
  await page.click("#console-open");
  await page.waitForFunction(() => document.getElementById("console-status").textContent === "connected");
  const termText = () => page.evaluate(() => document.querySelector("#terminal .xterm-rows")?.textContent || "");
  await page.keyboard.type("echo kvz-$((6*7))");
  await page.keyboard.press("Enter");
  for (let i = 0; i < 40 && !(await termText()).includes("kvz-42"); i++) await page.waitForTimeout(250);
  check((await termText()).includes("kvz-42"), "no command output in the console: " + (await termText()));
  await shot("guest-console");
  await page.click("#console-open");

  log("requests without the CSRF token or without the session are refused");
  const noCsrf = await page.evaluate(async () => {
    const r = await fetch("/v1/guests/web1/stop", { method: "POST", credentials: "same-origin" });
    return r.status;
  });
  check(noCsrf === 403, "POST without the CSRF token: " + noCsrf);
  const noCsrfDelete = await page.evaluate(async () =>
    (await fetch("/v1/guests/web1?force=1", { method: "DELETE", credentials: "same-origin" })).status);
  check(noCsrfDelete === 403, "DELETE without the CSRF token: " + noCsrfDelete);
  const anon = await browser.newContext({ ignoreHTTPSErrors: true });
  for (const [m, p] of [["get", "/v1/guests"], ["post", "/v1/guests/web1/stop"], ["delete", "/v1/guests/web1"]]) {
    const r = await anon.request[m](KVZ_UI + p, { maxRedirects: 0 });
    check(r.status() === 401, m + " " + p + " without a session: " + r.status());
  }
  await anon.close();

  log("stop it");
  await page.click("button:has-text('Stop')");
  await page.waitForFunction(() => document.getElementById("guest-state")?.textContent === "stopped");

  log("destroy it after confirming");
  await page.click("button:has-text('Destroy')");
  await page.waitForSelector("#confirm[open]");
  await shot("guest-destroy-confirm");
  await page.click("#confirm-ok");
  await page.waitForURL(KVZ_UI + "/#/");
  await page.waitForFunction(() => !document.querySelector("#guests tr[data-name='web1']"));

  log("readable on a phone");
  await page.setViewportSize({ width: 375, height: 740 });
  await shot("dashboard-phone");

  log("a session ended elsewhere sends the open page to the login");
  const second = await ctx.newPage();
  // Evidence for a flake seen once here under load (the goto below aborted,
  // as when the page itself navigates to the login): what the page's
  // requests got.
  const secondLog = [];
  second.on("response", (r) => r.status() >= 300 && secondLog.push(r.status() + " " + r.url()));
  second.on("requestfailed", (r) => secondLog.push("failed " + r.url() + " " + r.failure()?.errorText));
  second.on("framenavigated", (f) => f === second.mainFrame() && secondLog.push("navigated " + f.url()));
  await second.goto(KVZ_UI + "/").catch((e) => {
    throw new Error(e.message + "\nsecond page: " + secondLog.join("\n"));
  });
  await second.waitForSelector("#guests");
  await second.waitForFunction(() => document.getElementById("live").textContent === "live");
  const csrf = await page.evaluate(async () => (await (await fetch("/ui/session")).json()).csrf);
  await page.evaluate(async (t) => fetch("/ui/logout", { method: "POST", headers: { "X-CSRF-Token": t } }), csrf);
  await second.waitForURL(KVZ_UI + "/ui/login", { timeout: 15000 });
  await second.close();
  // The first page shares the ended session: its own event stream drops and
  // it goes to the login by itself (a goto here would race that navigation).
  await page.waitForURL(KVZ_UI + "/ui/login", { timeout: 15000 });
  await page.fill("#token", KVZ_TOKEN);
  await page.press("#token", "Enter");
  await page.waitForURL(KVZ_UI + "/");

  log("log out");
  await page.click("#logout");
  await page.waitForURL(KVZ_UI + "/ui/login");
  const after_logout = await ctx.request.get(KVZ_UI + "/v1/guests");
  check(after_logout.status() === 401, "the old cookie still works: " + after_logout.status());

  check(!urls.some((u) => u.includes(KVZ_TOKEN)), "the token appeared in a URL");
  check(consoleErrors.length === 0, "page errors: " + consoleErrors.join("; "));
  console.log("e2e: all steps passed");
} catch (e) {
  console.error("e2e: FAILED at step \"" + st.current + "\": " + e.message);
  if (page) await page.screenshot({ path: join(KVZ_SHOTS, "failed.png"), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
